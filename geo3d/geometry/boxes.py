"""Oriented 3D boxes: corners, volume, exact BEV / 3D IoU, BEV NMS, points in boxes.

Boxes are ``[K, 7]`` float tensors ``(x, y, z, l, w, h, yaw)``: centre, length along the
box's x axis, width along its y axis, height along z, and ``yaw`` in radians about +z
(``yaw = 0``: length along +x, width along +y). Sizes must be ``>= 0``; any finite yaw.

Why our own code: torchvision's ``box_iou`` / ``nms`` are axis-aligned only, and the
rotated versions (mmcv, pytorch3d, detectron2) are compiled extensions with other box
conventions that are not dependencies of geo3d; shapely is exact but works one polygon
at a time in Python. Here the rotated-rectangle intersection is vectorised torch (see
:mod:`geo3d.geometry._box_overlap`), exact up to float rounding, on any device.

Conventions:
    * Degenerate boxes (zero length, width or, for 3D, height) have zero area/volume and
      IoU 0 with every box, themselves included (as have boxes so thin that their area is
      below float rounding of their coordinates). IoU is never NaN.
    * IoU of boxes that only touch (shared face, edge or corner) is exactly 0; identical
      boxes give exactly 1 (areas within a few ulps of these are snapped).
    * Computation runs in the input dtype (float16 / bfloat16 are computed in float32 and
      cast back); both box arguments must share dtype and device.
"""

from __future__ import annotations

import numpy as np
import torch

from geo3d.errors import InvalidInputError
from geo3d.geometry._box_overlap import CORNER_SX, CORNER_SY, iter_intersection_blocks
from geo3d.geometry.validation import check_points

__all__ = [
    "box_corners",
    "box_volume",
    "box_iou_bev",
    "box_iou_3d",
    "nms_bev",
    "points_in_boxes",
]

_POINT_BLOCK_ELEMS = 1 << 20


def _check_boxes(boxes: object, name: str) -> torch.Tensor:
    """Validate a ``[K, 7]`` box tensor; return it in a dtype we compute in."""
    boxes = check_points(boxes, name, dim=7)
    bad = int((boxes[:, 3:6] < 0).any(1).sum())
    if bad:
        raise InvalidInputError(f"{name} has negative sizes (l, w, h must be >= 0) in {bad} rows")
    if boxes.dtype in (torch.float16, torch.bfloat16):
        return boxes.float()
    return boxes


def _check_pair(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.dtype != b.dtype:
        raise InvalidInputError(f"{name_a} ({a.dtype}) and {name_b} ({b.dtype}) must share a dtype")
    if a.device != b.device:
        raise InvalidInputError(
            f"{name_a} ({a.device}) and {name_b} ({b.device}) must be on one device"
        )


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """Eight corners of each box.

    Order: corners 0-3 are the bottom face (``z - h/2``), counter-clockwise seen from
    above (+z), starting at front-left: 0 = (+l/2, +w/2), 1 = (-l/2, +w/2),
    2 = (-l/2, -w/2), 3 = (+l/2, -w/2) in the box frame (x along length, y along width).
    Corners 4-7 are the top face in the same order (corner ``i + 4`` above corner ``i``).

    Args:
        boxes: ``(x, y, z, l, w, h, yaw)`` boxes.

    Shapes:
        boxes ``[K, 7]`` -> ``[K, 8, 3]``, same dtype and device.
    """
    work = _check_boxes(boxes, "boxes")
    sx = work.new_tensor(CORNER_SX * 2)
    sy = work.new_tensor(CORNER_SY * 2)
    sz = work.new_tensor((-1.0,) * 4 + (1.0,) * 4)
    lx = sx * work[:, 3:4] / 2
    ly = sy * work[:, 4:5] / 2
    lz = sz * work[:, 5:6] / 2
    c, s = torch.cos(work[:, 6:7]), torch.sin(work[:, 6:7])
    x = work[:, 0:1] + c * lx - s * ly
    y = work[:, 1:2] + s * lx + c * ly
    z = work[:, 2:3] + lz
    return torch.stack([x, y, z], -1).to(boxes.dtype)


def box_volume(boxes: torch.Tensor) -> torch.Tensor:
    """Volume ``l * w * h`` of each box.

    Shapes:
        boxes ``[K, 7]`` -> ``[K]``.
    """
    _check_boxes(boxes, "boxes")
    return boxes[:, 3] * boxes[:, 4] * boxes[:, 5]


def _box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor, three_d: bool) -> torch.Tensor:
    a = _check_boxes(boxes_a, "boxes_a")
    b = _check_boxes(boxes_b, "boxes_b")
    _check_pair(boxes_a, boxes_b, "boxes_a", "boxes_b")
    size_a = a[:, 3] * a[:, 4] * (a[:, 5] if three_d else 1)
    size_b = b[:, 3] * b[:, 4] * (b[:, 5] if three_d else 1)
    out = torch.zeros(a.shape[0], b.shape[0], dtype=a.dtype, device=a.device)
    for r0, r1, inter in iter_intersection_blocks(a, b, three_d):
        out[r0:r1] = _iou(inter, size_a[r0:r1], size_b)
    return out.to(boxes_a.dtype)


def _iou(inter: torch.Tensor, size_a: torch.Tensor, size_b: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` IoU from intersections and sizes; 0 where the union is 0."""
    union = size_a[:, None] + size_b[None, :] - inter
    positive = union > 0
    return torch.where(positive, inter / torch.where(positive, union, 1.0), 0.0).clamp(0, 1)


def box_iou_bev(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Exact IoU of the oriented box footprints (rotated rectangles) in the x-y plane.

    The intersection polygon is clipped exactly (up to float rounding) for every pair;
    pairs whose bounding circles are apart are skipped, and the work is chunked so
    memory stays bounded (a few tens of MB) for any ``N x M``. z, h are ignored.

    Args:
        boxes_a: ``(x, y, z, l, w, h, yaw)`` boxes.
        boxes_b: boxes of the same dtype and device.

    Shapes:
        boxes_a ``[N, 7]``, boxes_b ``[M, 7]`` -> ``[N, M]`` in ``[0, 1]``.
    """
    return _box_iou(boxes_a, boxes_b, three_d=False)


def box_iou_3d(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Exact 3D IoU of oriented (yaw-only) boxes.

    Intersection volume = BEV intersection area x overlap of the z extents; IoU =
    intersection / (volume_a + volume_b - intersection), 0 where the union is 0.

    Args:
        boxes_a: ``(x, y, z, l, w, h, yaw)`` boxes.
        boxes_b: boxes of the same dtype and device.

    Shapes:
        boxes_a ``[N, 7]``, boxes_b ``[M, 7]`` -> ``[N, M]`` in ``[0, 1]``.
    """
    return _box_iou(boxes_a, boxes_b, three_d=True)


def nms_bev(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression on BEV IoU.

    Boxes are visited in descending score order (ties: lower index first); a box is kept
    unless its BEV IoU with an already kept box is strictly greater than
    ``iou_threshold`` (as in ``torchvision.ops.nms``). So ``iou_threshold=1`` keeps
    everything and ``iou_threshold=0`` suppresses any positive overlap (touching boxes,
    IoU 0, are both kept).

    Args:
        boxes: ``(x, y, z, l, w, h, yaw)`` boxes.
        scores: confidence per box (finite, real).
        iou_threshold: in ``[0, 1]``.

    Shapes:
        boxes ``[K, 7]``, scores ``[K]`` -> kept indices ``[K']`` (long), in descending
        score order, on the boxes' device.
    """
    work = _check_boxes(boxes, "boxes")
    if not isinstance(scores, torch.Tensor):
        raise InvalidInputError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise InvalidInputError(
            f"scores must have shape [{boxes.shape[0]}] (one per box), got {list(scores.shape)}"
        )
    if scores.dtype == torch.bool or scores.is_complex():
        raise InvalidInputError(f"scores must be real numbers, got {scores.dtype}")
    if scores.is_floating_point() and not bool(torch.isfinite(scores).all()):
        raise InvalidInputError("scores contains NaN or Inf values")
    try:
        thr = float(iou_threshold)
    except (TypeError, ValueError):
        raise InvalidInputError(f"iou_threshold must be a number, got {iou_threshold!r}") from None
    if not 0.0 <= thr <= 1.0:
        raise InvalidInputError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")

    k = work.shape[0]
    order = torch.sort(scores.to(work.device), descending=True, stable=True).indices
    ordered = work[order]
    area = ordered[:, 3] * ordered[:, 4]
    src, dst = [], []
    # IoU of sorted box i with sorted boxes j > i only; keep the pairs above threshold.
    for r0, r1, inter in iter_intersection_blocks(ordered, ordered, three_d=False, upper=True):
        i, j = (_iou(inter, area[r0:r1], area) > thr).nonzero(as_tuple=True)
        src.append((i + r0).cpu())
        dst.append(j.cpu())
    suppressed = np.zeros(k, dtype=bool)
    keep = []
    if k:
        s = torch.cat(src).numpy()
        d = torch.cat(dst).numpy()
        starts = np.searchsorted(s, np.arange(k + 1))
        for i in range(k):
            if not suppressed[i]:
                keep.append(i)
                suppressed[d[starts[i] : starts[i + 1]]] = True
    kept = torch.as_tensor(keep, dtype=torch.long, device=work.device)
    return order[kept]


def points_in_boxes(pos: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Index of the box containing each point, or -1.

    Each point is moved into the box frames and tested against the half-extents. The
    boundary counts as inside (with a tolerance of a few ulps of the coordinates'
    magnitude, so corners computed by :func:`box_corners` are inside). A point inside
    several boxes gets the lowest box index. A cheap dense prefilter (x within the box's
    bounding circle) runs over chunks of points, and only the surviving pairs are moved
    into the box frames, so memory stays bounded (tens of MB) and 130k points x 100
    boxes takes a few tens of ms on 2 CPU cores.

    Args:
        pos: point coordinates.
        boxes: ``(x, y, z, l, w, h, yaw)`` boxes, same dtype and device as ``pos``.

    Shapes:
        pos ``[N, 3]``, boxes ``[K, 7]`` -> ``[N]`` long in ``[-1, K)``.
    """
    check_points(pos, "pos", dim=3)
    work = _check_boxes(boxes, "boxes")
    _check_pair(pos, boxes, "pos", "boxes")
    n, k = pos.shape[0], work.shape[0]
    out = torch.full((n,), -1, dtype=torch.long, device=pos.device)
    if n == 0 or k == 0:
        return out
    p_all = pos.to(work.dtype)
    eps = torch.finfo(work.dtype).eps
    half = work[:, 3:6] / 2
    tol = 8 * eps * (work[:, :3].abs().sum(1) + half.sum(1))
    c, s = torch.cos(work[:, 6]), torch.sin(work[:, 6])
    # Prefilter on x against each box's bounding circle (dense but cheap), then the exact
    # test on the surviving pairs only; chunks of points keep memory bounded.
    reach = torch.hypot(half[:, 0], half[:, 1]) + 2 * tol
    px, py, pz = (p_all[:, i].contiguous() for i in range(3))
    best = torch.full((n,), k, dtype=torch.long, device=pos.device)
    chunk = max(1, _POINT_BLOCK_ELEMS // k)
    for p0 in range(0, n, chunk):
        cand = (px[p0 : p0 + chunk, None] - work[None, :, 0]).abs() <= reach
        ii, kk = cand.nonzero(as_tuple=True)
        ii = ii + p0
        dx, dy, dz = px[ii] - work[kk, 0], py[ii] - work[kk, 1], pz[ii] - work[kk, 2]
        ck, sk, hk, tk = c[kk], s[kk], half[kk], tol[kk]
        inside = (dz.abs() <= hk[:, 2] + tk) & ((ck * dx + sk * dy).abs() <= hk[:, 0] + tk)
        inside &= (ck * dy - sk * dx).abs() <= hk[:, 1] + tk
        best.scatter_reduce_(0, ii[inside], kk[inside], reduce="amin")
    return torch.where(best < k, best, out)
