"""Mesh coarsening and ``ParallelTransportPool`` / ``ParallelTransportUnpool``.

Our own code; the pooling follows de Haan et al., "Gauge Equivariant Mesh CNNs", ICLR
2021, section 5: each fine vertex belongs to one coarse vertex (a vertex of the fine
mesh that was kept), its feature is parallel transported to the coarse vertex's gauge and
the cluster is averaged; unpooling transports the coarse feature back to each member.

Coarsening uses only the graph, never coordinates, so it is exactly invariant to rigid
motions and to batching: the kept vertices are a maximal independent set found by
Luby-style rounds (a vertex is kept when its priority beats every undecided neighbour's),
with priorities a fixed bijective hash of the vertex's index within its mesh. Each dropped
vertex joins its kept neighbour of highest priority. Coarse vertices are adjacent when
an edge joins their clusters. Kept vertices keep their position, normal and gauge.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from geo3d.models.gem.kernels import apply_rho

__all__ = ["Coarsening", "coarsen", "ParallelTransportPool", "ParallelTransportUnpool"]

_MASK = (1 << 31) - 1


class Coarsening(NamedTuple):
    """One coarsening step.

    Shapes:
        keep: ``[M]`` sorted indices of the kept vertices; cluster: ``[V]`` coarse index
        (0..M-1) of each fine vertex; edge_index: ``[2, E_c]`` coarse edges (both
        directions).
    """

    keep: Tensor
    cluster: Tensor
    edge_index: Tensor


def _local_index(batch: Tensor) -> Tensor:
    n = batch.shape[0]
    counts = torch.bincount(batch)
    start = torch.cumsum(counts, 0) - counts
    return torch.arange(n, device=batch.device) - start[batch]


@torch.no_grad()
def coarsen(edge_index: Tensor, batch: Tensor) -> Coarsening:
    """Maximal-independent-set coarsening of a graph (see the module docstring).

    Args:
        edge_index: ``[2, E]`` symmetric edges (row 0 source, row 1 target).
        batch: ``[V]`` sorted mesh index of each vertex.
    """
    n = batch.shape[0]
    src, dst = edge_index
    prio = (_local_index(batch) * 2654435761) & _MASK  # distinct within each mesh
    undecided = torch.ones(n, dtype=torch.bool, device=batch.device)
    kept = torch.zeros_like(undecided)
    while bool(undecided.any()):
        p = torch.where(undecided, prio, -1)
        best = torch.full((n,), -1, dtype=prio.dtype, device=prio.device)
        best = best.scatter_reduce(0, dst, p[src], "amax")
        new = undecided & (prio > best)
        kept |= new
        covered = new.clone()
        covered[dst[new[src]]] = True
        undecided &= ~covered
    # each dropped vertex joins its kept neighbour of highest priority
    cand = kept[src] & ~kept[dst]
    best = torch.full((n,), -1, dtype=prio.dtype, device=prio.device)
    best = best.scatter_reduce(0, dst[cand], prio[src[cand]], "amax")
    owner = torch.arange(n, device=batch.device)
    match = cand & (prio[src] == best[dst])
    owner[dst[match]] = src[match]
    keep = kept.nonzero()[:, 0]
    rank = torch.full((n,), -1, dtype=torch.long, device=batch.device)
    rank[keep] = torch.arange(keep.shape[0], device=batch.device)
    cluster = rank[owner]
    a, b = cluster[src], cluster[dst]
    m = keep.shape[0]
    pairs = torch.unique((b * m + a)[a != b])  # sorted by target, then source
    return Coarsening(keep, cluster, torch.stack([pairs % m, pairs // m]))


class ParallelTransportPool(nn.Module):
    """Average each cluster's features after transporting them to the coarse gauge.

    Shapes:
        ``x [V, C, 2N+1], cluster [V], angle [V]`` (``g`` from each fine vertex to its
        coarse vertex) ``-> [M, C, 2N+1]``.
    """

    def __init__(self, order: int) -> None:
        super().__init__()
        self.order = order

    def forward(self, x: Tensor, cluster: Tensor, angle: Tensor, num_coarse: int) -> Tensor:
        moved = apply_rho(x, angle, self.order)
        total = x.new_zeros(num_coarse, *x.shape[1:]).index_add_(0, cluster, moved)
        count = torch.bincount(cluster, minlength=num_coarse).clamp_min(1).to(x.dtype)
        return total / count[:, None, None]


class ParallelTransportUnpool(nn.Module):
    """Give each fine vertex its cluster's feature, transported back to its own gauge.

    Shapes:
        ``x [M, C, 2N+1], cluster [V], angle [V]`` (``g`` from fine to coarse, inverted
        here) ``-> [V, C, 2N+1]``.
    """

    def __init__(self, order: int) -> None:
        super().__init__()
        self.order = order

    def forward(self, x: Tensor, cluster: Tensor, angle: Tensor) -> Tensor:
        return apply_rho(x[cluster], -angle, self.order)
