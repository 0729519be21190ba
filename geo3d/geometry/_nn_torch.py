"""Device-agnostic backend: chunked brute force and a vectorised FPS loop in torch.

This is the CUDA path (the tensors never leave the device) and the fallback for inputs
the CPU libraries cannot take. Distances are float64 and computed with the same
arithmetic as scipy's cKDTree (sum of squared differences in dimension order, four
accumulators from four dimensions on, then the square root), so for the usual 1-3
dimensions both backends see bit-identical distances and give identical answers.
Memory is bounded by processing the query rows in chunks of about ``_ENTRY_BUDGET``
distance entries.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

_ENTRY_BUDGET = 1 << 24  # float64 distance entries per chunk (128 MiB)


def pairwise_distance(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[m, n]`` float64 Euclidean distances between the rows of ``q`` and ``x``."""
    q, x = q.double(), x.double()
    dim = q.shape[1]

    def sq(j: int) -> torch.Tensor:
        t = q[:, j, None] - x[None, :, j]
        return t.mul_(t)

    blocked = (dim // 4) * 4
    if blocked:
        acc = [sq(j) for j in range(4)]
        for j in range(4, blocked):
            acc[j % 4].add_(sq(j))
        s = acc[0].add_(acc[1]).add_(acc[2]).add_(acc[3])
        rest = range(blocked, dim)
    else:
        s = sq(0)
        rest = range(1, dim)
    for j in rest:
        s.add_(sq(j))
    return s.sqrt_()


def _chunk_rows(n_cols: int) -> int:
    return max(1, _ENTRY_BUDGET // max(1, n_cols))


def knn_rows(
    x: torch.Tensor,
    q: torch.Tensor,
    kk: int,
    self_idx: Optional[torch.Tensor] = None,
    r: Optional[float] = None,
) -> torch.Tensor:
    """Same contract as :func:`geo3d.geometry._nn_scipy.knn_rows`, on torch tensors."""
    n, m = x.shape[0], q.shape[0]
    out = torch.empty((m, kk), dtype=torch.long, device=x.device)
    if kk == 0 or m == 0:
        return out
    step = _chunk_rows(n)
    for s in range(0, m, step):
        d = pairwise_distance(q[s : s + step], x)
        c = d.shape[0]
        if self_idx is not None:
            d[torch.arange(c, device=d.device), self_idx[s : s + c]] = float("inf")
        if r is not None:
            d.masked_fill_(d > r, float("inf"))
        vals, idx = torch.topk(d, min(kk + 1, n), dim=1, largest=False, sorted=True)
        if vals.shape[1] > kk:
            redo = (vals[:, kk] == vals[:, kk - 1]) & torch.isfinite(vals[:, kk])
        else:
            redo = torch.zeros(c, dtype=torch.bool, device=d.device)
        vals, idx = vals[:, :kk], idx[:, :kk]
        # ties inside the kept set: order by index, then stably by distance
        order = idx.argsort(dim=1)
        vals, idx = vals.gather(1, order), idx.gather(1, order)
        order = vals.argsort(dim=1, stable=True)
        vals, idx = vals.gather(1, order), idx.gather(1, order)
        rows = redo.nonzero().squeeze(1)
        if rows.numel():
            sv, si = torch.sort(d[rows], dim=1, stable=True)
            vals[rows], idx[rows] = sv[:, :kk], si[:, :kk]
        out[s : s + c] = idx.masked_fill_(~torch.isfinite(vals), n)
    return out


def radius_rows(
    x: torch.Tensor, q: torch.Tensor, r: float, self_idx: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ``x`` within distance ``<= r`` of each ``q`` row, by ``(row, distance, index)``.

    Returns:
        ``(rows [E], cols [E])`` long tensors.
    """
    rows_out: List[torch.Tensor] = []
    cols_out: List[torch.Tensor] = []
    step = _chunk_rows(x.shape[0])
    for s in range(0, q.shape[0], step):
        d = pairwise_distance(q[s : s + step], x)
        mask = d <= r
        if self_idx is not None:
            c = d.shape[0]
            mask[torch.arange(c, device=d.device), self_idx[s : s + c]] = False
        rr, cc = mask.nonzero(as_tuple=True)  # row-major: sorted by (row, col)
        order = torch.argsort(d[rr, cc], stable=True)
        order = order[torch.argsort(rr[order], stable=True)]
        rows_out.append(rr[order] + s)
        cols_out.append(cc[order])
    if not rows_out:
        empty = torch.empty(0, dtype=torch.long, device=x.device)
        return empty, empty
    return torch.cat(rows_out), torch.cat(cols_out)


def fps(
    pos: torch.Tensor, ptr: List[int], n_samples: List[int], starts: List[int]
) -> torch.Tensor:
    """Vanilla farthest point sampling of all batch items at once (padded, vectorised).

    Keeps each point's distance to the nearest selected point and takes the argmax each
    step (first index among equal maxima). Selected points are marked ``-1`` so an index
    is never returned twice: once only duplicates of selected points are left, the
    lowest unselected indices follow. Distances are computed in ``pos``'s dtype.

    Args:
        pos: ``[N, D]`` points.
        ptr: ``B + 1`` item boundaries.
        n_samples: samples per item (``<=`` its size).
        starts: local start index per item.

    Returns:
        ``[sum(n_samples)]`` long indices into ``pos``, grouped by item.
    """
    dev = pos.device
    items = [b for b in range(len(n_samples)) if n_samples[b] > 0]
    if not items:
        return torch.empty(0, dtype=torch.long, device=dev)
    sizes = torch.tensor([ptr[b + 1] - ptr[b] for b in items], device=dev)
    offsets = torch.tensor([ptr[b] for b in items], device=dev)
    m = torch.tensor([n_samples[b] for b in items], device=dev)
    n_max, m_max, nb = int(sizes.max()), int(m.max()), len(items)
    local = torch.arange(n_max, device=dev)
    valid = local[None, :] < sizes[:, None]
    padded = pos.new_zeros((nb, n_max, pos.shape[1]))
    padded[valid] = pos[(offsets[:, None] + local[None, :])[valid]]
    dist = torch.full((nb, n_max), float("inf"), dtype=pos.dtype, device=dev)
    dist.masked_fill_(~valid, float("-inf"))
    cur = torch.tensor([starts[b] for b in items], device=dev)
    out = torch.empty((nb, m_max), dtype=torch.long, device=dev)
    out[:, 0] = cur
    rows = torch.arange(nb, device=dev)
    dist[rows, cur] = -1.0
    for t in range(1, m_max):
        last = padded[rows, cur]
        diff = padded[..., 0] - last[:, 0, None]
        d = diff.mul_(diff)
        for j in range(1, pos.shape[1]):
            diff = padded[..., j] - last[:, j, None]
            d.add_(diff.mul_(diff))
        torch.minimum(dist, d, out=dist)
        cur = dist.argmax(dim=1)
        dist[rows, cur] = -1.0
        out[:, t] = cur
    keep = torch.arange(m_max, device=dev)[None, :] < m[:, None]
    return (out + offsets[:, None])[keep]
