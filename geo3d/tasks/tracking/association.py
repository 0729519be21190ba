"""Track-to-detection affinities (3D IoU, 3D GIoU, centre distance) and Hungarian matching.

3D IoU is that of :func:`geo3d.geometry.box_iou_3d` (exact, oriented; the tracker calls
its rotated-rectangle kernel on the candidate pairs only). 3D GIoU (Rezatofighi
et al., CVPR 2019, lifted to 3D boxes as AB3DMOT does) is written here:
``GIoU = IoU - (C - U) / C`` with ``U`` the union volume and ``C`` the volume of the
enclosing shape: the convex hull of both boxes' footprints (8 corners in the x-y plane)
times the joint z extent. The hull area is a Jarvis march vectorised with numpy over all
pairs (at most 8 steps of array operations), since scipy's ``ConvexHull`` works on one
point set per call. The assignment is ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from geo3d.errors import InvalidInputError
from geo3d.geometry._box_overlap import CORNER_SX, CORNER_SY, rect_intersection_area
from geo3d.geometry.boxes import box_iou_3d
from geo3d.geometry.validation import check_points

__all__ = ["METRICS", "DEFAULT_THRESHOLDS", "box_giou_3d", "affinity_matrix", "hungarian_match"]

#: Association metrics: similarities, larger is closer ("distance" is the negated
#: Euclidean distance of the box centres, in metres).
METRICS: Tuple[str, ...] = ("iou_3d", "giou_3d", "distance")
#: A pair may match when its affinity is strictly above the threshold; for "distance"
#: the threshold is a maximum centre distance in metres (a pair matches when closer).
DEFAULT_THRESHOLDS = {"iou_3d": 0.01, "giou_3d": -0.2, "distance": 2.0}


def _hull_area(points: np.ndarray) -> np.ndarray:
    """Area of the convex hull of each point set, ``[P, n, 2] -> [P]``.

    Jarvis march (gift wrapping) counter-clockwise from the lowest of the leftmost
    points: the next vertex is the point with the smallest left turn from the last edge
    (the farthest among equal turns, or the start if it is among them). The area is the fan of the visited edges about the
    start vertex.
    """
    p, n, _ = points.shape
    rows = np.arange(p)
    x, y = points[..., 0], points[..., 1]
    start = np.where(x == x.min(1, keepdims=True), y, np.inf).argmin(1)
    origin = points[rows, start]
    cur = start.copy()
    direction = np.tile(np.array([0.0, -1.0]), (p, 1))
    area = np.zeros(p)
    done = np.zeros(p, dtype=bool)
    for _ in range(n):
        c = points[rows, cur]
        d = points - c[:, None, :]
        dist2 = (d * d).sum(-1)
        cross = direction[:, None, 0] * d[..., 1] - direction[:, None, 1] * d[..., 0]
        dot = (direction[:, None, :] * d).sum(-1)
        turn = np.arctan2(cross, dot)
        turn = np.where(turn < 0, turn + 2 * np.pi, turn)
        turn = np.where(dist2 > 0, turn, np.inf)
        best = turn.min(1, keepdims=True)
        stuck = ~np.isfinite(best[:, 0])
        tied = turn <= best + 1e-12
        nxt = np.where(tied, dist2, -1.0).argmax(1)
        # Near-duplicates of the start can tie with it: close the hull rather than loop.
        nxt = np.where(tied[rows, start] & (cur != start), start, nxt)
        q = points[rows, nxt]
        a, b = c - origin, q - origin
        live = ~done & ~stuck
        area += np.where(live, 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]), 0.0)
        done |= stuck | (nxt == start)
        direction = q - c
        cur = nxt
        if done.all():
            break
    return np.maximum(area, 0.0)


def _footprint(boxes: np.ndarray) -> np.ndarray:
    """``[K, 4, 2]`` footprint corners, in the order of :func:`geo3d.geometry.box_corners`
    (numpy here: a torch call costs more than the arithmetic for tens of boxes)."""
    lx = np.asarray(CORNER_SX) * boxes[:, 3:4] / 2
    ly = np.asarray(CORNER_SY) * boxes[:, 4:5] / 2
    c, s = np.cos(boxes[:, 6:7]), np.sin(boxes[:, 6:7])
    return np.stack([boxes[:, 0:1] + c * lx - s * ly, boxes[:, 1:2] + s * lx + c * ly], -1)


def _giou_np(a: np.ndarray, b: np.ndarray, iou: np.ndarray,
             need: Optional[np.ndarray] = None) -> np.ndarray:
    """``[N, M]`` GIoU from float64 boxes and their ``[N, M]`` 3D IoU.

    Only the pairs where ``need`` (``[N, M]`` bool, default all) is true are computed;
    the others are set to -1.
    """
    n, m = a.shape[0], b.shape[0]
    out = np.full((n, m), -1.0)
    ii, jj = np.nonzero(np.ones((n, m), dtype=bool) if need is None else need)
    if ii.size == 0:
        return out
    pa, pb = a[ii], b[jj]
    pair_iou = iou[ii, jj]
    union = (np.prod(pa[:, 3:6], 1) + np.prod(pb[:, 3:6], 1)) / (1.0 + pair_iou)  # I = IoU * U
    corners = _footprint(np.concatenate([pa, pb]))
    hull = _hull_area(np.concatenate([corners[: ii.size], corners[ii.size :]], 1))
    top = np.maximum(pa[:, 2] + pa[:, 5] / 2, pb[:, 2] + pb[:, 5] / 2)
    bottom = np.minimum(pa[:, 2] - pa[:, 5] / 2, pb[:, 2] - pb[:, 5] / 2)
    enclosing = np.maximum(hull * (top - bottom), union)  # rounding: the hull holds the union
    safe = np.where(enclosing > 0, enclosing, 1.0)
    out[ii, jj] = np.where(enclosing > 0, pair_iou - (enclosing - union) / safe, -1.0)
    return out


def _circles_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]``: the footprints' bounding circles overlap (a pair may intersect)."""
    reach = 0.5 * (np.hypot(a[:, 3], a[:, 4])[:, None] + np.hypot(b[:, 3], b[:, 4])[None, :])
    return np.linalg.norm(a[:, None, :2] - b[None, :, :2], axis=-1) <= reach * (1 + 1e-6)


def _giou_cannot_exceed(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """``[N, M]``: pairs whose GIoU is certainly ``<= threshold`` (skipped by the tracker).

    For footprints apart (IoU 0), ``GIoU = U / C - 1``. Each footprint holds a disc of
    radius ``r = min(l, w) / 2`` at its centre, so the hull holds the trapezoid of the two
    discs' diameters normal to the centre line, of area ``d (r_a + r_b)``, and
    ``C >= d (r_a + r_b) max(h_a, h_b)``; when that is ``>= U / (1 + threshold)`` the
    GIoU is at most ``threshold``.
    """
    if threshold <= -1.0:
        return np.zeros((a.shape[0], b.shape[0]), dtype=bool)
    d = np.linalg.norm(a[:, None, :2] - b[None, :, :2], axis=-1)
    r = 0.5 * (np.minimum(a[:, 3], a[:, 4])[:, None] + np.minimum(b[:, 3], b[:, 4])[None, :])
    h = np.maximum(a[:, 5][:, None], b[:, 5][None, :])
    union = np.prod(a[:, 3:6], 1)[:, None] + np.prod(b[:, 3:6], 1)[None, :]
    return ~_circles_overlap(a, b) & (d * r * h >= union / (1.0 + threshold))


def box_giou_3d(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Generalised 3D IoU of oriented boxes, in ``[-1, 1]``.

    ``GIoU = IoU - (C - U) / C``: ``U`` the union volume, ``C`` the convex hull area of
    both footprints times the joint z extent (as AB3DMOT). Pairs of degenerate
    (zero-volume) boxes give -1.

    Args:
        boxes_a: ``(x, y, z, l, w, h, yaw)`` boxes.
        boxes_b: boxes of the same dtype.

    Shapes:
        boxes_a ``[N, 7]``, boxes_b ``[M, 7]`` -> ``[N, M]``, dtype of the inputs.
    """
    iou = box_iou_3d(boxes_a, boxes_b)  # validates both
    a = boxes_a.detach().cpu().double().numpy()
    b = boxes_b.detach().cpu().double().numpy()
    out = _giou_np(a, b, iou.detach().cpu().double().numpy())
    return torch.from_numpy(out).to(device=boxes_a.device, dtype=iou.dtype)


def _pair_iou_3d(a: np.ndarray, b: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """3D IoU of float64 boxes for the ``[N, M]`` ``pairs`` only (0 elsewhere).

    The same rotated-rectangle kernel as :func:`geo3d.geometry.box_iou_3d`, called once
    on the pairs whose bounding circles and z extents overlap: a tracker frame then costs
    one batched kernel call and no per-call checks or blocking.
    """
    top = np.minimum(a[:, None, 2] + a[:, None, 5] / 2, b[None, :, 2] + b[None, :, 5] / 2)
    bottom = np.maximum(a[:, None, 2] - a[:, None, 5] / 2, b[None, :, 2] - b[None, :, 5] / 2)
    zover = np.maximum(top - bottom, 0.0)
    ii, jj = np.nonzero(pairs & (zover > 0) & _circles_overlap(a, b))
    iou = np.zeros(pairs.shape)
    if ii.size == 0:
        return iou
    rect = torch.from_numpy(np.concatenate([a[ii], b[jj]])[:, [0, 1, 3, 4, 6]])
    inter = rect_intersection_area(rect[: ii.size], rect[ii.size :]).numpy() * zover[ii, jj]
    union = np.prod(a[ii, 3:6], 1) + np.prod(b[jj, 3:6], 1) - inter
    iou[ii, jj] = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0).clip(0, 1)
    return iou


def _affinity_np(a: np.ndarray, b: np.ndarray, metric: str,
                 same: Optional[np.ndarray] = None, threshold: Optional[float] = None) -> np.ndarray:
    """Affinity of float64 ``[N, 7]`` and ``[M, 7]`` boxes, ``[N, M]`` float64.

    With ``same`` (``[N, M]`` bool: the pairs that may match) and ``threshold``, pairs that
    cannot match are not computed exactly: their IoU is 0 and their GIoU -1.
    """
    if metric == "distance":
        return -np.linalg.norm(a[:, None, :3] - b[None, :, :3], axis=-1)
    n, m = a.shape[0], b.shape[0]
    same = np.ones((n, m), dtype=bool) if same is None else same
    iou = _pair_iou_3d(a, b, same)
    if metric == "iou_3d":
        return iou
    need = same if threshold is None else same & ~_giou_cannot_exceed(a, b, threshold)
    return _giou_np(a, b, iou, need)


def affinity_matrix(boxes_a: torch.Tensor, boxes_b: torch.Tensor, metric: str = "giou_3d") -> torch.Tensor:
    """Pairwise affinity of two box sets by one of :data:`METRICS` (larger is closer).

    Args:
        boxes_a: ``(x, y, z, l, w, h, yaw)`` boxes.
        boxes_b: boxes.
        metric: ``"iou_3d"``, ``"giou_3d"`` (default) or ``"distance"`` (minus the centre
            distance in metres).

    Shapes:
        boxes_a ``[N, 7]``, boxes_b ``[M, 7]`` -> ``[N, M]`` float64.
    """
    if metric not in METRICS:
        raise InvalidInputError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    for t, name in ((boxes_a, "boxes_a"), (boxes_b, "boxes_b")):
        check_points(t, name, dim=7)
        if bool((t[:, 3:6] < 0).any()):
            raise InvalidInputError(f"{name} has negative sizes (l, w, h must be >= 0)")
    a = boxes_a.detach().cpu().double().numpy()
    b = boxes_b.detach().cpu().double().numpy()
    return torch.from_numpy(_affinity_np(a, b, metric))


def hungarian_match(affinity: np.ndarray, threshold: float, labels_a: np.ndarray,
                    labels_b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of rows to columns of the same label.

    Pairs of different labels never match; the assignment maximises the summed affinity
    (``linear_sum_assignment``), then drops pairs with affinity ``<= threshold``.

    Args:
        affinity: ``[N, M]`` similarities (larger is closer), finite.
        threshold: minimum affinity (exclusive).
        labels_a: ``[N]`` class of each row; labels_b: ``[M]`` class of each column.

    Returns:
        ``(rows, cols)``: matched index pairs (``[P]`` int64 each), sorted by row.
    """
    if affinity.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    allowed = (labels_a[:, None] == labels_b[None, :]) & (affinity > threshold)
    # Forbidden pairs get a cost no allowed pair can beat; they are dropped afterwards.
    big = 1.0 + 2.0 * (np.abs(affinity[allowed]).max(initial=0.0) + 1.0) * min(affinity.shape)
    cost = np.where(allowed, -affinity, big)
    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)
