"""Private kernels of :mod:`geo3d.geometry.boxes`: rotated-rectangle intersection.

The intersection of two rectangles is a convex polygon whose vertices are (a) corners of
one rectangle inside the other and (b) points where their edges cross. We compute it in
the frame of the first rectangle ``A`` (where ``A`` is axis-aligned, so the tests against
it are plain comparisons): the four edges of ``B`` are clipped to ``A``
(Liang-Barsky), which yields the corners of ``B`` inside ``A`` and all edge crossings,
and the corners of ``A`` are tested against ``B``. These at most 12 candidate points are
sorted by angle around their mean and the shoelace formula gives the area. Every step is
a fixed-size tensor operation with masks, so all pairs run at once.

Rounding is absorbed by a tolerance of a few ulps of the pair's coordinate magnitude:
corners of ``A`` within it of ``B`` count as inside (and are projected onto ``B``; all
candidates are clamped onto ``A``), which moves the area by at most about
``tolerance x perimeter`` and in practice by a few ulps. Areas within that bound of 0 or
of the smaller rectangle's area are snapped to exactly 0 or to that area, so touching
boxes give 0 and identical (or nested) boxes give the exact ratio.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import torch

# Box frame signs of the four footprint corners, counter-clockwise seen from +z, starting
# at front-left (+l/2, +w/2). Shared with ``boxes.box_corners``.
CORNER_SX = (1.0, -1.0, -1.0, 1.0)
CORNER_SY = (1.0, 1.0, -1.0, -1.0)

# Elements of one [rows, M] block of the pairwise prefilter, and pairs per kernel call.
BLOCK_ELEMS = 1 << 20
PAIR_CHUNK = 1 << 15


def _slab(
    p: torch.Tensor, e: torch.Tensor, half: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Parameter interval ``[lo, hi]`` where ``p + t e`` lies in ``[-half, half]``."""
    moving = e != 0
    inv = 1.0 / torch.where(moving, e, torch.ones_like(e))
    ta = (-half - p) * inv
    tb = (half - p) * inv
    inf = torch.where(p.abs() <= half, float("inf"), float("-inf"))
    lo = torch.where(moving, torch.minimum(ta, tb), -inf)
    hi = torch.where(moving, torch.maximum(ta, tb), inf)
    return lo, hi


def rect_intersection_area(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Area of the intersection of paired rotated rectangles.

    Args:
        a: ``[P, 5]`` rectangles ``(x, y, l, w, yaw)``.
        b: ``[P, 5]`` rectangles, paired row by row with ``a``.

    Returns:
        ``[P]`` intersection areas, in ``[0, min(area_a, area_b)]``.
    """
    eps = torch.finfo(a.dtype).eps
    sx = a.new_tensor(CORNER_SX)
    sy = a.new_tensor(CORNER_SY)
    hla, hwa = a[:, 2:3] / 2, a[:, 3:4] / 2
    hlb, hwb = b[:, 2:3] / 2, b[:, 3:4] / 2

    # Centre of B and its rotation, in the frame of A.
    ca, sa = torch.cos(a[:, 4:5]), torch.sin(a[:, 4:5])
    gx, gy = b[:, 0:1] - a[:, 0:1], b[:, 1:2] - a[:, 1:2]
    dx, dy = ca * gx + sa * gy, ca * gy - sa * gx
    rel = b[:, 4:5] - a[:, 4:5]
    c, s = torch.cos(rel), torch.sin(rel)
    scale = dx.abs() + dy.abs() + hla + hwa + hlb + hwb
    tol = 8 * eps * scale

    # Corners of B in A's frame; corners of A in A's frame and in B's frame.
    ux, uy = sx * hlb, sy * hwb
    bx, by = dx + c * ux - s * uy, dy + s * ux + c * uy
    ax, ay = sx * hla, sy * hwa
    qx, qy = c * (ax - dx) + s * (ay - dy), c * (ay - dy) - s * (ax - dx)
    a_in = (qx.abs() <= hlb + tol) & (qy.abs() <= hwb + tol)

    # Clip the edges of B to A. No tolerance here: a crossing lost to rounding lies within
    # rounding of a corner of A (taken above with the tolerance) or of another crossing.
    ex, ey = bx.roll(-1, 1) - bx, by.roll(-1, 1) - by
    lo_x, hi_x = _slab(bx, ex, hla)
    lo_y, hi_y = _slab(by, ey, hwa)
    t0 = torch.maximum(lo_x, lo_y).clamp(min=0)
    t1 = torch.minimum(hi_x, hi_y).clamp(max=1)
    ok = t0 <= t1
    t0 = torch.where(ok, t0, 0.0)
    t1 = torch.where(ok, t1, 0.0)

    # Corners of A taken within the tolerance are projected onto B, so the tolerance adds
    # no sliver; then every candidate is clamped onto A against rounding excursions.
    qx = torch.minimum(torch.maximum(qx, -hlb), hlb)
    qy = torch.minimum(torch.maximum(qy, -hwb), hwb)
    px = torch.cat([bx + t0 * ex, bx + t1 * ex, dx + c * qx - s * qy], 1)
    py = torch.cat([by + t0 * ey, by + t1 * ey, dy + s * qx + c * qy], 1)
    px = torch.minimum(torch.maximum(px, -hla), hla)
    py = torch.minimum(torch.maximum(py, -hwa), hwa)
    mask = torch.cat([ok, ok, a_in], 1)

    # Sort the candidates by angle about their mean, then the shoelace formula.
    count = mask.sum(1, keepdim=True)
    mx = torch.where(mask, px, 0.0).sum(1, keepdim=True) / count.clamp(min=1)
    my = torch.where(mask, py, 0.0).sum(1, keepdim=True) / count.clamp(min=1)
    px, py = px - mx, py - my
    angle = torch.where(mask, torch.atan2(py, px), float("inf"))
    order = angle.argsort(1)
    px, py, mask = px.gather(1, order), py.gather(1, order), mask.gather(1, order)
    # Invalid slots (sorted last) repeat the first point: they add zero-length edges.
    px = torch.where(mask, px, px[:, :1])
    py = torch.where(mask, py, py[:, :1])
    area = 0.5 * (px * py.roll(-1, 1) - px.roll(-1, 1) * py).sum(1)
    area = torch.where(count[:, 0] >= 3, area, 0.0)

    # Snap within the error bound, then clamp to the feasible range.
    snap = (tol * torch.minimum(hla + hwa, hlb + hwb))[:, 0]
    amax = torch.minimum(4 * hla * hwa, 4 * hlb * hwb)[:, 0]
    area = torch.where(area >= amax - snap, amax, area)
    area = torch.where(area <= snap, 0.0, area)
    return torch.minimum(area.clamp(min=0), amax)


def _z_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` length of the overlap of the z extents of boxes ``a`` and ``b``."""
    top = torch.minimum(a[:, None, 2] + a[:, None, 5] / 2, b[None, :, 2] + b[None, :, 5] / 2)
    bottom = torch.maximum(a[:, None, 2] - a[:, None, 5] / 2, b[None, :, 2] - b[None, :, 5] / 2)
    return (top - bottom).clamp(min=0)


def iter_intersection_blocks(
    a: torch.Tensor, b: torch.Tensor, three_d: bool, upper: bool = False
) -> Iterator[Tuple[int, int, torch.Tensor]]:
    """Yield ``(r0, r1, inter)``: intersection of boxes ``a[r0:r1]`` with all of ``b``.

    ``inter`` is the ``[r1 - r0, M]`` BEV intersection area, or the 3D intersection
    volume when ``three_d``. Pairs whose bounding circles (or z extents) do not overlap
    are skipped (as are pairs ``j <= i`` when ``upper``: they are left 0); the others go
    through :func:`rect_intersection_area` in chunks, so memory stays bounded whatever
    ``N x M``.
    """
    n, m = a.shape[0], b.shape[0]
    rows = max(1, BLOCK_ELEMS // max(m, 1))
    radius_a = 0.5 * torch.hypot(a[:, 3], a[:, 4])
    radius_b = 0.5 * torch.hypot(b[:, 3], b[:, 4])
    rect_b = b[:, [0, 1, 3, 4, 6]]
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        blk = a[r0:r1]
        dx = blk[:, None, 0] - b[None, :, 0]
        dy = blk[:, None, 1] - b[None, :, 1]
        reach = (radius_a[r0:r1, None] + radius_b[None, :]) * (1 + 1e-4)
        cand = dx * dx + dy * dy <= reach * reach
        if upper:
            row = torch.arange(r0, r1, device=a.device)[:, None]
            cand &= torch.arange(m, device=a.device)[None, :] > row
        zover = None
        if three_d:
            zover = _z_overlap(blk, b)
            cand &= zover > 0
        inter = torch.zeros(r1 - r0, m, dtype=a.dtype, device=a.device)
        ii, jj = cand.nonzero(as_tuple=True)
        rect_a = blk[:, [0, 1, 3, 4, 6]]
        for k in range(0, ii.numel(), PAIR_CHUNK):
            i, j = ii[k : k + PAIR_CHUNK], jj[k : k + PAIR_CHUNK]
            area = rect_intersection_area(rect_a[i], rect_b[j])
            inter[i, j] = area * zover[i, j] if zover is not None else area
        yield r0, r1, inter
