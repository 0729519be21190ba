"""Scene builders: pure adapters from ``Data`` and predictions to Open3D geometry.

Each builder validates its input, never changes it, and returns a :class:`Scene` (layers
plus legend); scenes add up with ``+``. Geometry is Open3D's (``PointCloud``, ``LineSet``,
``TriangleMesh``); box corners come from :func:`geo3d.geometry.boxes.box_corners`.

Styles (see :mod:`geo3d.viewers.palettes` for the colours):

* boxes: edges coloured by class, plus a heading mark: a line from the top face's centre
  to the middle of its front edge and a cross on the front face. Ground truth is drawn
  with solid edges in the class colour; predictions with dashed edges, the class colour
  mixed half-way to white;
* track trails: a polyline through each track's box centres over the frames, in the
  track id's colour (``tab20``), in the coordinates of the reference frame;
* hands: bones as lines and joints as spheres, coloured by finger (``tab10``: thumb blue,
  index orange, middle green, ring red, pinky violet; wrist grey); predictions are the
  same colours mixed half-way to white, drawn beside the ground truth.
"""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib
import numpy as np
import open3d as o3d
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import box_corners
from geo3d.geometry.validation import check_index, check_points
from geo3d.viewers import palettes
from geo3d.viewers.scene import Material, Scene, SceneLayer

__all__ = ["COLOR_BY", "points", "boxes", "tracks", "hand", "hands", "mesh", "scene_from_data",
           "default_bones"]

COLOR_BY = ("auto", "label", "prediction", "instance", "score", "intensity", "error",
            "height", "rgb", "uniform")
_BOX_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
              (0, 4), (1, 5), (2, 6), (3, 7)]
_DASHES = 6  # dashes per box edge of a prediction


def _np(t, dtype=float) -> np.ndarray:
    return (t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)).astype(dtype)


def _rgb3(color, name: str) -> np.ndarray:
    arr = np.asarray(color, float)
    if arr.shape != (3,) or not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise InvalidInputError(f"{name} must be 3 numbers in [0, 1], got {color!r}")
    return arr


def _lighten(rgb: np.ndarray, amount: float = 0.5) -> np.ndarray:
    return rgb + (1.0 - rgb) * amount


def _line_set(vertices: np.ndarray, segments: np.ndarray, colors: np.ndarray) -> o3d.geometry.LineSet:
    ls = o3d.geometry.LineSet()
    ls.points = o3d.utility.Vector3dVector(np.asarray(vertices, float).reshape(-1, 3))
    ls.lines = o3d.utility.Vector2iVector(np.asarray(segments, np.int32).reshape(-1, 2))
    ls.colors = o3d.utility.Vector3dVector(np.asarray(colors, float).reshape(-1, 3))
    return ls


def _attr(data: Data, name: str):
    return getattr(data, name, None) if data is not None else None


def _x_column(data: Data, names: Sequence[str]) -> Optional[np.ndarray]:
    """Columns of ``data.x`` by ``data.x_names`` (or the first column for intensity)."""
    x = _attr(data, "x")
    if x is None or x.dim() != 2 or x.shape[0] != data.pos.shape[0]:
        return None
    x_names = list(_attr(data, "x_names") or [])
    if x_names:
        if not all(n in x_names for n in names):
            return None
        return _np(x[:, [x_names.index(n) for n in names]])
    if list(names) == ["intensity"] and x.shape[1] == 1:
        return _np(x)
    return None


def _auto_color(data: Data, prediction: Optional[Data]) -> str:
    n = data.pos.shape[0]
    if _attr(prediction, "y") is not None and prediction.y.shape[0] == n:
        return "prediction"
    if _attr(data, "y") is not None and data.y.dim() == 1 and data.y.shape[0] == n:
        return "label"
    if _x_column(data, ["red", "green", "blue"]) is not None:
        return "rgb"
    if _x_column(data, ["intensity"]) is not None:
        return "intensity"
    return "height"


def _per_point(t, n: int, what: str) -> np.ndarray:
    if t is None:
        raise InvalidInputError(f"color_by={what!r} needs {what} values, none were given")
    arr = _np(t)
    if arr.shape[0] != n or arr.ndim != 1:
        raise InvalidInputError(f"{what} values must have shape [{n}], got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{what} values hold NaN/Inf")
    return arr


def _scalar_legend(what: str, rgb_range, cmap: str = "viridis"):
    lo, hi = rgb_range
    ends = np.asarray(matplotlib.colormaps[cmap]([0.0, 1.0]))[:, :3]
    return ((f"{what} {lo:.3g}", tuple(ends[0])), (f"{what} {hi:.3g}", tuple(ends[1])))


def point_colors(data: Data, color_by: str = "auto", prediction: Optional[Data] = None,
                 names: Optional[Sequence[str]] = None, values=None, color=(0.8, 0.8, 0.8)):
    """Colours of the points of ``data`` and their legend (see :func:`points`)."""
    if color_by not in COLOR_BY:
        raise InvalidInputError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")
    n = data.pos.shape[0]
    if color_by == "auto":
        color_by = _auto_color(data, prediction)
    if color_by in ("label", "prediction"):
        src = data if color_by == "label" else prediction
        labels = _per_point(_attr(src, "y"), n, "label" if color_by == "label" else "predicted label")
        return palettes.label_colors(labels.astype(np.int64), names)
    if color_by == "instance":
        ids = _per_point(_attr(data, "instance") if values is None else values, n, "instance")
        return palettes.instance_colors(ids.astype(np.int64)), ()
    if color_by == "error":
        if values is not None:
            err = _per_point(values, n, "error")
            rgb, rng = palettes.scalar_colors(err, cmap="magma")
            return rgb, _scalar_legend("error", rng, "magma")
        gt = _per_point(_attr(data, "y"), n, "label")
        pred = _per_point(_attr(prediction, "y"), n, "predicted label")
        wrong = gt != pred
        rgb = np.where(wrong[:, None], palettes.WRONG_COLOR, palettes.CORRECT_COLOR)
        rgb[gt < 0] = palettes.NONE_COLOR
        return rgb, (("correct", palettes.CORRECT_COLOR), ("wrong", palettes.WRONG_COLOR))
    if color_by == "rgb":
        rgb = _x_column(data, ["red", "green", "blue"])
        if rgb is None:
            raise InvalidInputError("color_by='rgb' needs red, green, blue columns in data.x")
        return np.clip(rgb, 0, 1), ()
    if color_by == "uniform":
        return np.tile(_rgb3(color, "color"), (n, 1)), ()
    if color_by == "score":
        src = values if values is not None else _attr(prediction, "score")
        scores = _per_point(src if src is not None else _attr(data, "score"), n, "score")
        rgb, rng = palettes.scalar_colors(scores, 0.0, 1.0)
        return rgb, _scalar_legend("score", rng)
    if color_by == "intensity":
        col = values if values is not None else _x_column(data, ["intensity"])
        inten = _per_point(None if col is None else np.asarray(col).reshape(n, -1)[:, 0], n,
                           "intensity")
        rgb, rng = palettes.scalar_colors(inten)
        return rgb, _scalar_legend("intensity", rng)
    heights = _np(data.pos[:, 2]) if values is None else _per_point(values, n, "height")
    rgb, rng = palettes.scalar_colors(heights)
    return rgb, _scalar_legend("height", rng)


def points(data: Data, color_by: str = "auto", prediction: Optional[Data] = None,
           names: Optional[Sequence[str]] = None, values=None, point_size: float = 2.0,
           color=(0.8, 0.8, 0.8), name: str = "points") -> Scene:
    """A point cloud coloured by label, prediction, instance, score, intensity, error...

    Args:
        data: ``Data`` with ``pos``; ``y``, ``instance``, ``x`` (+ ``x_names``) as needed.
        color_by: ``"auto"`` (default: predicted labels if given, else ``y``, else RGB
            columns, else intensity, else height), ``"label"`` (``data.y``),
            ``"prediction"`` (``prediction.y``), ``"instance"`` (``data.instance``),
            ``"score"`` (``values`` or ``prediction.score``, in [0, 1]), ``"intensity"``,
            ``"error"`` (``values`` as magnitudes, else wrong / right of ``prediction.y``
            against ``data.y``), ``"height"`` (z), ``"rgb"`` or ``"uniform"`` (``color``).
        prediction: model output as ``Data`` (``y`` [N] labels, ``score`` [N]).
        names: class names by label id (default: the simulator's classes).
        values: per-point values ``[N]`` for ``"score"``, ``"error"``, ``"intensity"``,
            ``"height"`` or ``"instance"`` instead of those in ``data``.
        point_size: in pixels (default 2).
        color: RGB in [0, 1] for ``"uniform"`` (default light grey).
        name: layer name (default ``"points"``).

    Shapes:
        ``data.pos [N, 3]`` -> one point layer of N points.
    """
    pos = check_points(_attr(data, "pos"), "data.pos")
    rgb, legend = point_colors(data, color_by, prediction, names, values, color)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(_np(pos).reshape(-1, 3)))
    pcd.colors = o3d.utility.Vector3dVector(np.asarray(rgb, float).reshape(-1, 3))
    return Scene((SceneLayer(name, pcd, Material(point_size=point_size), "points"),), legend)


def _dashed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[E, 2 * _DASHES, 3]`` end points of dashes along segments ``a -> b`` (``[E, 3]``)."""
    t = np.linspace(0.0, 1.0, 2 * _DASHES)[None, :, None]
    return a[:, None] + t * (b - a)[:, None]


def boxes(boxes: torch.Tensor, labels=None, names: Optional[Sequence[str]] = None,
          predicted: bool = False, color=None, line_width: float = 2.0,
          name: Optional[str] = None) -> Scene:
    """Oriented boxes as line sets with a heading mark (styles: module docstring).

    Args:
        boxes: ``(x, y, z, l, w, h, yaw)`` boxes.
        labels: class ids ``[K]`` (default: all grey, no legend).
        names: class names by id (default: the simulator's classes).
        predicted: draw as predictions (dashed, lighter) instead of ground truth.
        color: one RGB in [0, 1] for every box instead of class colours.
        line_width: in pixels (default 2).
        name: layer name (default ``"gt_boxes"`` / ``"pred_boxes"``).

    Shapes:
        boxes ``[K, 7]``, labels ``[K]``.
    """
    corners = _np(box_corners(check_points(boxes, "boxes", dim=7).double()))
    k = corners.shape[0]
    if color is not None:
        rgb, legend = np.tile(_rgb3(color, "color"), (k, 1)), ()
    elif labels is not None:
        labels = check_index(labels, "labels", k)
        rgb, legend = palettes.label_colors(_np(labels, np.int64), names)
    else:
        rgb, legend = np.tile(palettes.NONE_COLOR, (k, 1)), ()
    if predicted:
        rgb = _lighten(rgb)
        legend = tuple((f"{n} (predicted)", tuple(_lighten(np.asarray(c)))) for n, c in legend)
    edges = np.asarray(_BOX_EDGES + [(0, 7), (3, 4)])  # 12 edges + the front-face cross
    a, b = corners[:, edges[:, 0]], corners[:, edges[:, 1]]  # [K, 14, 3]
    top_centre = corners[:, 4:].mean(1)
    front_mid = (corners[:, 4] + corners[:, 7]) / 2
    a = np.concatenate([a, top_centre[:, None]], 1).reshape(-1, 3)
    b = np.concatenate([b, front_mid[:, None]], 1).reshape(-1, 3)
    per_box = edges.shape[0] + 1
    if predicted:
        verts = _dashed(a, b).reshape(-1, 3)
        segs = np.arange(verts.shape[0]).reshape(-1, 2)
        seg_rgb = np.repeat(rgb, per_box * _DASHES, axis=0)
    else:
        verts = np.stack([a, b], 1).reshape(-1, 3)
        segs = np.arange(verts.shape[0]).reshape(-1, 2)
        seg_rgb = np.repeat(rgb, per_box, axis=0)
    layer_name = name or ("pred_boxes" if predicted else "gt_boxes")
    layer = SceneLayer(layer_name, _line_set(verts, segs, seg_rgb),
                       Material("unlitLine", line_width=line_width),
                       "predictions" if predicted else "gt")
    return Scene((layer,), legend)


def _pose(frame: Data) -> np.ndarray:
    pose = _attr(frame, "ego_pose")
    if pose is None:
        return np.eye(4)
    pose = _np(pose).reshape(-1, 4, 4)[0]
    if not np.isfinite(pose).all():
        raise InvalidInputError("ego_pose holds NaN/Inf")
    return pose


def tracks(frames: Sequence[Data], reference: int = -1, line_width: float = 2.0,
           predicted: bool = False, name: Optional[str] = None) -> Scene:
    """Track trails: each track's box centres joined over ``frames``.

    Args:
        frames: ``Data`` with ``boxes`` [K, 7] and ``track_id`` [K] (ground truth or a
            tracker's output), optionally ``ego_pose`` [1, 4, 4] (world-from-sensor) to
            follow a moving sensor.
        reference: index of the frame whose coordinates the trails are drawn in
            (default -1: the last).
        line_width: in pixels (default 2).
        predicted: a tracker's output (colours lightened half-way to white).
        name: layer name (default ``"tracks"`` / ``"pred_tracks"``).

    Shapes:
        one line set; a track seen in ``m`` frames gives ``m - 1`` segments.
    """
    frames = list(frames)
    if not frames:
        raise InvalidInputError("frames must hold at least one frame")
    if not -len(frames) <= reference < len(frames):
        raise InvalidInputError(f"reference {reference} is out of range for {len(frames)} frames")
    to_ref = np.linalg.inv(_pose(frames[reference]))
    centres: dict[int, list[np.ndarray]] = {}
    for i, frame in enumerate(frames):
        b = _attr(frame, "boxes")
        ids = _attr(frame, "track_id")
        if b is None or ids is None:
            raise InvalidInputError(f"frames[{i}] needs boxes and track_id")
        b = _np(check_points(b, f"frames[{i}].boxes", dim=7))
        ids = _np(check_index(ids, f"frames[{i}].track_id", b.shape[0]), np.int64)
        world = _pose(frame) @ np.c_[b[:, :3], np.ones(len(b))].T
        ref = (to_ref @ world).T[:, :3]
        for tid, c in zip(ids, ref):
            centres.setdefault(int(tid), []).append(c)
    verts, segs, cols = [], [], []
    for tid, cs in sorted(centres.items()):
        if len(cs) < 2:
            continue
        start = sum(len(v) for v in verts)
        verts.append(np.asarray(cs))
        segs.extend((start + j, start + j + 1) for j in range(len(cs) - 1))
        cols.extend([palettes.instance_colors(np.array([tid]))[0]] * (len(cs) - 1))
    verts = np.concatenate(verts) if verts else np.zeros((0, 3))
    cols = np.asarray(cols, float).reshape(-1, 3)
    if predicted:
        cols = _lighten(cols)
    layer = SceneLayer(name or ("pred_tracks" if predicted else "tracks"),
                       _line_set(verts, np.asarray(segs).reshape(-1, 2), cols),
                       Material("unlitLine", line_width=line_width), "tracks")
    return Scene((layer,))


def default_bones() -> tuple[tuple[int, int], ...]:
    """``geo3d.sim.hand.BONES`` if present, else the standard 21-joint tree (wrist 0;
    thumb 1-4, index 5-8, middle 9-12, ring 13-16, pinky 17-20, each chained from the
    wrist)."""
    try:
        from geo3d.sim.hand import BONES
        return tuple(tuple(b) for b in BONES)
    except ImportError:
        return tuple((0 if k == 0 else 1 + 4 * f + k - 1, 1 + 4 * f + k)
                     for f in range(5) for k in range(4))


_FINGERS = ("thumb", "index", "middle", "ring", "pinky")


def _finger_colors(joint_ids: np.ndarray) -> np.ndarray:
    tab = np.asarray(matplotlib.colormaps["tab10"].colors, float)
    out = tab[np.clip((joint_ids - 1) // 4, 0, 4)]
    out[joint_ids == 0] = palettes.NONE_COLOR
    return out


def hand(joints, bones: Optional[Sequence[tuple[int, int]]] = None, predicted: bool = False,
         offset=(0.0, 0.0, 0.0), radius: Optional[float] = None, line_width: float = 3.0,
         name: Optional[str] = None) -> Scene:
    """One hand skeleton: bones as lines, joints as spheres, coloured by finger.

    Args:
        joints: joint positions, in the order of ``geo3d.sim.hand.JOINTS``.
        bones: ``(parent, child)`` joint index pairs (default :func:`default_bones`).
        predicted: draw as a prediction (colours lightened half-way to white).
        offset: translation added to every joint (to place hands side by side).
        radius: joint sphere radius (default 3 % of the hand's bounding-box diagonal).
        line_width: bone width in pixels (default 3).
        name: layer name prefix (default ``"gt_hand"`` / ``"pred_hand"``).

    Shapes:
        joints ``[J, 3]`` (21 for the standard hand) -> a bone line set and a joint mesh.
    """
    j = _np(check_points(joints, "joints")) + _offset(offset)
    bones = default_bones() if bones is None else tuple(tuple(b) for b in bones)
    bone_arr = np.asarray(bones, np.int64).reshape(-1, 2)
    if bone_arr.size and (bone_arr.min() < 0 or bone_arr.max() >= len(j)):
        raise InvalidInputError(f"bones index joints outside 0..{len(j) - 1}")
    colors = _finger_colors(np.arange(len(j)))
    if predicted:
        colors = _lighten(colors)
    diag = float(np.linalg.norm(np.ptp(j, 0))) if len(j) else 0.0
    radius = radius if radius is not None else max(0.03 * diag, 1e-3)
    spheres = o3d.geometry.TriangleMesh()
    for p, c in zip(j, colors):
        s = o3d.geometry.TriangleMesh.create_sphere(radius, resolution=8)
        s.translate(p)
        s.paint_uniform_color(c)
        spheres += s
    spheres.compute_vertex_normals()
    prefix = name or ("pred_hand" if predicted else "gt_hand")
    group = "predictions" if predicted else "gt"
    legend = tuple((f, tuple(_finger_colors(np.array([1 + 4 * i]))[0])) for i, f in enumerate(_FINGERS))
    return Scene((
        SceneLayer(f"{prefix}_bones", _line_set(j, bone_arr, colors[bone_arr[:, 1]]),
                   Material("unlitLine", line_width=line_width), group),
        SceneLayer(f"{prefix}_joints", spheres, Material("defaultLit"), group),
    ), legend, kind="object")


def _offset(offset) -> np.ndarray:
    arr = np.asarray(offset, float)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise InvalidInputError(f"offset must be 3 finite numbers, got {offset!r}")
    return arr


def hands(gt=None, pred=None, bones: Optional[Sequence[tuple[int, int]]] = None,
          gap: float = 0.25) -> Scene:
    """Ground-truth and predicted hands side by side (prediction shifted along -y, to
    the right in the default views).

    Args:
        gt, pred: ``[J, 3]`` joints (either may be ``None``).
        bones: as in :func:`hand`.
        gap: extra space between the hands, as a fraction of the hand's size (default 0.25).
    """
    scene = Scene(kind="object")
    if gt is not None:
        scene = scene + hand(gt, bones)
    if pred is not None:
        shift = np.zeros(3)
        if gt is not None:
            g, p = _np(check_points(gt, "gt")), _np(check_points(pred, "pred"))
            width = max(np.ptp(g[:, 1]), np.ptp(p[:, 1]), 1e-3) if len(g) and len(p) else 0.0
            shift[1] = (g[:, 1].min() - p[:, 1].max() - gap * width) if width else 0.0
        scene = scene + hand(pred, bones, predicted=True, offset=shift)
    return scene


def mesh(data: Data, color_by: str = "auto", correspondence=None, template_pos=None,
         names: Optional[Sequence[str]] = None, color=(0.8, 0.8, 0.8),
         name: str = "mesh") -> Scene:
    """A triangle mesh, shaded, with per-vertex colours.

    Args:
        data: ``Data`` with ``pos`` [V, 3] and ``face`` [3, T]; ``y`` [V] part labels,
            ``x`` with ``red, green, blue`` columns as needed.
        color_by: ``"auto"`` (part labels if ``y`` is per-vertex, else vertex colours,
            else uniform), ``"part"`` (``y`` with ``names``), ``"rgb"`` (vertex colours),
            ``"correspondence"`` or ``"uniform"``.
        correspondence: ``[V]`` template vertex id of each vertex (``"correspondence"``;
            default: vertex ``i`` matches template vertex ``i``).
        template_pos: ``[V_t, 3]`` template vertices whose normalised coordinates give
            the colours (default: this mesh's own vertices).
        names: part names by label id.
        color: RGB for ``"uniform"``.
        name: layer name (default ``"mesh"``).
    """
    pos = _np(check_points(_attr(data, "pos"), "data.pos"))
    face = _attr(data, "face")
    if face is None or not isinstance(face, torch.Tensor) or face.dim() != 2 or face.shape[0] != 3:
        raise InvalidInputError("data.face must be a [3, T] integer tensor")
    tri = _np(check_index(face.reshape(-1), "data.face"), np.int64).reshape(3, -1).T
    if tri.size and (tri.min() < 0 or tri.max() >= len(pos)):
        raise InvalidInputError(f"data.face indexes vertices outside 0..{len(pos) - 1}")
    n = len(pos)
    if color_by == "auto":
        y = _attr(data, "y")
        color_by = ("part" if y is not None and y.dim() == 1 and y.shape[0] == n else
                    "rgb" if _x_column(data, ["red", "green", "blue"]) is not None else "uniform")
    legend = ()
    if color_by == "part":
        rgb, legend = palettes.label_colors(_per_point(_attr(data, "y"), n, "part label")
                                            .astype(np.int64), names)
    elif color_by == "correspondence":
        template = pos if template_pos is None else _np(check_points(template_pos, "template_pos"))
        table = palettes.correspondence_colors(template)
        ids = np.arange(n) if correspondence is None else _np(
            check_index(correspondence, "correspondence", n), np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
            raise InvalidInputError(f"correspondence ids must lie in 0..{len(table) - 1}")
        rgb = table[ids]
    elif color_by in ("rgb", "uniform"):
        rgb, _ = point_colors(data, color_by, color=color)
    else:
        raise InvalidInputError("mesh color_by must be one of auto, part, rgb, "
                                f"correspondence, uniform; got {color_by!r}")
    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(pos),
                                  o3d.utility.Vector3iVector(tri.astype(np.int32)))
    m.vertex_colors = o3d.utility.Vector3dVector(np.asarray(rgb, float).reshape(-1, 3))
    m.compute_vertex_normals()
    return Scene((SceneLayer(name, m, Material("defaultLit"), "mesh"),), legend, kind="object")


def scene_from_data(data: Data, prediction: Optional[Data] = None, color_by: str = "auto",
                    names: Optional[Sequence[str]] = None,
                    history: Optional[Sequence[Data]] = None, point_size: float = 2.0) -> Scene:
    """Everything a frame holds: points (or a mesh), GT boxes, predicted boxes, hands,
    track trails.

    Args:
        data: the frame: ``pos``; optionally ``face`` (drawn as a mesh), ``y``,
            ``boxes`` + ``box_labels``, ``joints``.
        prediction: model output as ``Data``: ``y`` (labels per point), ``boxes`` +
            ``box_labels``, ``joints``.
        color_by: how to colour points (see :func:`points`).
        names: class names by id.
        history: the frames of the sequence up to and including this one, for track
            trails (ground-truth ``track_id`` and, when predictions carry ``track_id``,
            the caller's own).
        point_size: in pixels (default 2).
    """
    face = _attr(data, "face")
    if face is not None:
        scene = mesh(data, "auto" if color_by == "auto" else color_by, names=names)
    else:
        scene = points(data, color_by, prediction, names, point_size=point_size)
    b = _attr(data, "boxes")
    if b is not None:
        scene = scene + boxes(b, _attr(data, "box_labels"), names)
    pb = _attr(prediction, "boxes")
    if pb is not None:
        scene = scene + boxes(pb, _attr(prediction, "box_labels"), names, predicted=True)
    if _attr(data, "joints") is not None or _attr(prediction, "joints") is not None:
        scene = scene + hands(_attr(data, "joints"), _attr(prediction, "joints"))
    if history and all(_attr(f, "track_id") is not None for f in history):
        scene = scene + tracks(history)
    return scene
