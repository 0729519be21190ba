"""PointNet++ (single-scale grouping) on PyG ``MessagePassing`` with geo3d's neighbour ops.

Qi et al., "PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric
Space", NeurIPS 2017.

* Set abstraction: centroids by farthest point sampling (``geo3d.geometry.fps``:
  fpsample's QuickFPS; random start in training, first point in eval), neighbourhoods by
  ``geo3d.geometry.radius`` with ``max_num_neighbors`` (the nearest ones are kept, never
  an arbitrary subset), then a PointNet ``x_i' = max_j MLP([x_j, pos_j - pos_i])`` (PyG's
  ``PointNetConv``, which we cannot reuse as is because its first linear layer runs per
  edge; here it is split exactly into a per-point and a per-centroid part).
* Feature propagation: 3-NN inverse squared distance interpolation
  (``geo3d.geometry.knn``), concatenated with the skip features, then a per-point MLP.
* Classification: a global PointNet on the last level, max-pooled by the head.

Radii are in the units of ``pos``. The classification defaults follow the paper's
ModelNet model (clouds scaled to the unit sphere). The segmentation defaults are a
compromise between unit-scale parts and LiDAR frames in metres: the first level keeps
1/8 of the points (a 110k-point frame: ~14k centroids), radii 0.25, 0.5, 1, 2; pass
``ratios``/``radii`` suited to your data.
"""

from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from geo3d.errors import InvalidInputError
from geo3d.geometry import fps, knn, radius
from geo3d.models._layers import check_channels, check_dropout, check_int, mlp
from geo3d.models.heads import ClassificationHead, PointCloudModel, SegmentationHead
from geo3d.models.registry import register

# knn_interpolate's CSR weights: torch warns once per process that CSR support is "beta"
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

__all__ = [
    "PointNetConv",
    "SetAbstraction",
    "FeaturePropagation",
    "knn_interpolate",
    "PointNet2",
    "pointnet2_cls",
    "pointnet2_seg",
]


class PointNetConv(MessagePassing):
    """``x_i' = max_{j in N(i)} MLP([x_j, pos_j - pos_i])`` from points to centroids.

    Args:
        in_channels: width of ``x`` (0: relative positions only).
        channels: MLP widths (each layer Linear, BatchNorm, ReLU).

    Shapes:
        ``x [N, in_channels] | None, pos [N, 3], pos_c [M, 3], edge_index [2, E]`` (row 0
        point ``j``, row 1 centroid ``i``) ``-> [M, channels[-1]]``.
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__(aggr="max")
        self.in_channels = in_channels
        self.first = nn.Linear(in_channels + 3, channels[0], bias=False)
        self.post = nn.Sequential(nn.BatchNorm1d(channels[0]), nn.ReLU(), *mlp(list(channels)))

    def forward(self, x: Optional[Tensor], pos: Tensor, pos_c: Tensor, edge_index: Tensor) -> Tensor:
        w_x, w_p = self.first.weight[:, : self.in_channels], self.first.weight[:, self.in_channels :]
        src = pos @ w_p.T
        if x is not None:
            src = src + x @ w_x.T
        ctr = pos_c @ w_p.T
        return self.propagate(edge_index, src=src, ctr=ctr, size=(pos.shape[0], pos_c.shape[0]))

    def message(self, src_j: Tensor, ctr_i: Tensor) -> Tensor:
        return self.post(src_j - ctr_i)


class SetAbstraction(nn.Module):
    """Sample centroids (FPS), group within ``r`` (nearest ``max_neighbors``), PointNet.

    Args:
        in_channels: width of ``x``.
        channels: PointNet MLP widths.
        ratio: fraction of each cloud's points kept as centroids, in ``(0, 1]``.
        r: grouping radius (units of ``pos``).
        max_neighbors: at most this many (nearest) points per centroid.

    Shapes:
        ``x [N, C] | None, pos [N, 3], batch [N] -> (x' [M, channels[-1]], pos [M, 3],
        batch [M])`` with ``M = sum_b ceil(ratio * N_b)``.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], ratio: float, r: float, max_neighbors: int) -> None:
        super().__init__()
        self.ratio, self.r, self.max_neighbors = ratio, r, max_neighbors
        self.conv = PointNetConv(in_channels, channels)

    def forward(self, x: Optional[Tensor], pos: Tensor, batch: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        idx = fps(pos.detach(), batch, ratio=self.ratio, random_start=self.training)
        pos_c, batch_c = pos[idx], batch[idx]
        centre, point = radius(pos, pos_c, self.r, batch, batch_c, max_num_neighbors=self.max_neighbors)
        out = self.conv(x, pos, pos_c, torch.stack([point, centre]))
        return out, pos_c, batch_c


def knn_interpolate(
    x: Tensor, pos_x: Tensor, pos_y: Tensor, batch_x: Tensor, batch_y: Tensor, k: int = 3
) -> Tensor:
    """Inverse squared distance interpolation of ``x`` from its ``k`` nearest points.

    ``y_i = sum_j w_ij x_j / sum_j w_ij`` with ``w_ij = 1 / max(|pos_y_i - pos_x_j|^2,
    1e-16)`` over the ``k`` nearest ``pos_x`` of ``pos_y_i`` in the same cloud (PointNet++
    eq. 2 with p = 2; same as PyG's ``knn_interpolate``).

    On the CPU in float32/64, when no gradient flows to the positions, the normalised
    weights form a CSR matrix ``[M, N]`` times ``x``: 5x faster than gathering ``[M * k,
    C]`` rows and scattering them back (4,096 x 3 neighbours, 256 channels, one thread:
    1.9 against 9.9 ms). Otherwise, or for other dtypes, the gather-scatter form.

    Shapes:
        ``x [N, C], pos_x [N, 3], pos_y [M, 3], batch_x [N], batch_y [M] -> [M, C]``.
    """
    y_idx, x_idx = knn(pos_x.detach(), pos_y.detach(), k, batch_x, batch_y)
    d2 = (pos_y[y_idx] - pos_x[x_idx]).pow(2).sum(dim=1)
    w = 1.0 / d2.clamp_min(1e-16)
    rows = pos_y.shape[0]
    den = w.new_zeros(rows).index_add_(0, y_idx, w)
    w = w / den.clamp_min(torch.finfo(w.dtype).tiny)[y_idx]  # rows without neighbours stay 0
    if _csr_product_ok(x, w):
        crow = torch.zeros(rows + 1, dtype=torch.long, device=x.device)
        torch.cumsum(torch.bincount(y_idx, minlength=rows), 0, out=crow[1:])
        order = torch.argsort(y_idx * x.shape[0] + x_idx)  # CSR: columns sorted in each row
        weights = torch.sparse_csr_tensor(crow, x_idx[order], w[order].to(x.dtype),
                                          size=(rows, x.shape[0]), check_invariants=False)
        return weights @ x
    return x.new_zeros((rows, x.shape[1])).index_add_(0, y_idx, x[x_idx] * w[:, None].to(x.dtype))


def _csr_product_ok(x: Tensor, w: Tensor) -> bool:
    """Whether ``knn_interpolate`` may use torch's CSR product: CPU float32/64 (MKL), and
    no gradient to the weights (torch's CSR values get none when columns repeat)."""
    return (x.device.type == "cpu" and x.layout == torch.strided and x.dim() == 2
            and x.dtype in (torch.float32, torch.float64)
            and not (w.requires_grad and torch.is_grad_enabled()))


class FeaturePropagation(nn.Module):
    """Interpolate coarse features to finer points (3-NN), concat skip features, MLP.

    Args:
        in_channels: coarse feature width + skip feature width.
        channels: MLP widths.
        k: interpolation neighbours (default 3).

    Shapes:
        ``x [N, C], pos [N, 3], batch [N], skip [M, S] | None, pos_skip [M, 3],
        batch_skip [M] -> [M, channels[-1]]``.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], k: int = 3) -> None:
        super().__init__()
        self.k = k
        self.mlp = mlp([in_channels, *channels])

    def forward(self, x, pos, batch, skip, pos_skip, batch_skip) -> Tensor:
        h = knn_interpolate(x, pos, pos_skip, batch, batch_skip, self.k)
        if skip is not None:
            h = torch.cat([h, skip], dim=1)
        return self.mlp(h)


class PointNet2(nn.Module):
    """PointNet++ backbone: set abstraction levels, then either a global PointNet
    (classification) or feature propagation back to the input points (segmentation).

    Args:
        in_channels: width of ``data.x`` (0: ``pos`` only).
        sa_channels: PointNet MLP widths per level.
        ratios, radii: FPS ratio and grouping radius per level.
        max_neighbors: neighbours per centroid.
        global_channels: classification: widths of the global PointNet on the last level.
        fp_channels: segmentation: MLP widths per propagation step, coarsest first.

    Shapes:
        ``pos [N, 3], x, batch [N] -> (features, batch)``: ``[M_L, global_channels[-1]]``
        on the last level's points (classification) or ``[N, fp_channels[-1][-1]]``.
    """

    def __init__(
        self,
        in_channels: int,
        sa_channels: Sequence[Sequence[int]],
        ratios: Sequence[float],
        radii: Sequence[float],
        max_neighbors: int,
        global_channels: Optional[Sequence[int]] = None,
        fp_channels: Optional[Sequence[Sequence[int]]] = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        widths = [in_channels]
        sa = []
        for chans, ratio, r in zip(sa_channels, ratios, radii):
            sa.append(SetAbstraction(widths[-1], chans, ratio, r, max_neighbors))
            widths.append(chans[-1])
        self.sa = nn.ModuleList(sa)
        self.global_mlp = None if global_channels is None else mlp([widths[-1] + 3, *global_channels])
        fp = []
        if fp_channels is not None:
            coarse = widths[-1]
            for level, chans in zip(range(len(sa), 0, -1), fp_channels):
                fp.append(FeaturePropagation(coarse + widths[level - 1], chans))
                coarse = chans[-1]
        self.fp = nn.ModuleList(fp)

    def forward(self, pos: Tensor, x: Optional[Tensor], batch: Tensor, num_graphs: int = 1):
        levels: List[Tuple[Optional[Tensor], Tensor, Tensor]] = [(x, pos, batch)]
        for level, sa in enumerate(self.sa, start=1):
            levels.append(sa(*levels[-1]))
            if self.training and levels[-1][1].shape[0] < 2:
                raise InvalidInputError(
                    f"data.pos has too few points for this PointNet++: level {level} keeps "
                    f"{levels[-1][1].shape[0]} point(s) and training needs at least 2 for "
                    f"BatchNorm; use more points or a smaller depth"
                )
        h, p, b = levels[-1]
        if self.global_mlp is not None:
            return self.global_mlp(torch.cat([h, p], dim=1)), b
        for fp, (skip, p_s, b_s) in zip(self.fp, reversed(levels[:-1])):
            h = fp(h, p, b, skip, p_s, b_s)
            p, b = p_s, b_s
        return h, b


def _levels(ratios, radii, width, max_neighbors, in_channels, num_classes, dropout):
    check_int(in_channels, "in_channels", 0)
    check_int(num_classes, "num_classes", 1)
    check_int(width, "width", 1)
    check_int(max_neighbors, "max_neighbors", 1)
    check_dropout(dropout)
    ratios, radii = tuple(ratios), tuple(radii)
    if not ratios or len(ratios) != len(radii):
        raise InvalidInputError(
            f"ratios and radii must be non-empty and of equal length (one per level), "
            f"got {len(ratios)} and {len(radii)}"
        )
    for name, vals in (("ratios", ratios), ("radii", radii)):
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < float("inf")):
                raise InvalidInputError(f"{name} must hold finite positive numbers, got {vals!r}")
    if any(r > 1 for r in ratios):
        raise InvalidInputError(f"ratios must be in (0, 1], got {ratios!r}")
    sa = tuple((width * 2**l, width * 2**l, 2 * width * 2**l) for l in range(len(ratios)))
    return ratios, radii, sa


def _with_depth(ratios: Sequence[float], radii: Sequence[float], depth: Optional[int]):
    """Cut or extend per-level ``ratios``/``radii`` to ``depth`` levels (None: unchanged)."""
    if depth is None:
        return ratios, radii
    depth = check_int(depth, "depth", 1)
    ratios, radii = tuple(ratios)[:depth], tuple(radii)[:depth]
    while len(ratios) < depth:
        ratios, radii = ratios + (0.25,), radii + (2 * radii[-1] if radii else 0.2,)
    return ratios, radii


@register("pointnet2_cls")
def pointnet2_cls(
    *,
    in_channels: int = 0,
    num_classes: int,
    width: int = 64,
    ratios: Sequence[float] = (0.5, 0.25),
    radii: Sequence[float] = (0.2, 0.4),
    depth: Optional[int] = None,
    max_neighbors: int = 64,
    head_channels: Sequence[int] = (512, 256),
    dropout: float = 0.5,
) -> PointCloudModel:
    """PointNet++ SSG classifier (the paper's ModelNet model with the defaults).

    Level ``l`` (``depth = len(ratios)`` levels) has MLP ``(w, w, 2w) * 2^l``; the global
    PointNet ``(c, 2c, 4c)`` with ``c = w * 2^depth`` (defaults: 128, 256, then 256, 512,
    1024), max-pooled, then an MLP head.

    Args:
        in_channels: width of ``data.x`` (default 0: ``pos`` only).
        num_classes: number of classes.
        width: base width ``w`` (default 64).
        ratios: FPS ratio per level (default ``(0.5, 0.25)``).
        depth: number of levels; None (default) uses ``len(ratios)``. Fewer levels keep the
            first ratios and radii; more repeat ratio 0.25 and double the radius.
        radii: grouping radius per level, units of ``pos`` (default ``(0.2, 0.4)``).
        max_neighbors: nearest neighbours kept per centroid (default 64).
        head_channels: hidden widths of the head (default ``(512, 256)``).
        dropout: head dropout (default 0.5).
    """
    ratios, radii = _with_depth(ratios, radii, depth)
    ratios, radii, sa = _levels(ratios, radii, width, max_neighbors, in_channels, num_classes, dropout)
    head_channels = check_channels(head_channels, "head_channels", 0)
    c = width * 2 ** len(ratios)
    backbone = PointNet2(in_channels, sa, ratios, radii, max_neighbors, global_channels=(c, 2 * c, 4 * c))
    head = ClassificationHead(4 * c, num_classes, head_channels, dropout, pool="max")
    return PointCloudModel(backbone, head)


@register("pointnet2_seg")
def pointnet2_seg(
    *,
    in_channels: int = 0,
    num_classes: int,
    width: int = 32,
    ratios: Sequence[float] = (0.125, 0.25, 0.25, 0.25),
    radii: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
    depth: Optional[int] = None,
    max_neighbors: int = 32,
    head_channels: Sequence[int] = (128,),
    dropout: float = 0.5,
    class_weights: Optional[Sequence[float]] = None,
    lovasz_weight: float = 0.0,
) -> PointCloudModel:
    """PointNet++ SSG semantic segmentation (the paper's ScanNet widths by default).

    Level ``l`` has MLP ``(w, w, 2w) * 2^l``; propagation steps (coarsest first) have MLPs
    ``(8w, 8w)``, ..., ``(8w, 4w)``, ``(4w, 4w, 4w)``; then a per-point head.

    Args:
        in_channels: width of ``data.x`` (default 0: ``pos`` only).
        num_classes: number of classes.
        width: base width ``w`` (default 32).
        ratios: FPS ratio per level (default ``(0.125, 0.25, 0.25, 0.25)``).
        depth: number of levels; None (default) uses ``len(ratios)``. Fewer levels keep the
            first ratios and radii; more repeat ratio 0.25 and double the radius.
        radii: grouping radius per level (default ``(0.25, 0.5, 1.0, 2.0)``).
        max_neighbors: nearest neighbours kept per centroid (default 32).
        head_channels: hidden widths of the head (default ``(128,)``).
        dropout: head dropout (default 0.5).
        class_weights: per-class cross-entropy weights (default None: unweighted); see
            :class:`~geo3d.models.heads.SegmentationHead`.
        lovasz_weight: weight of the added Lovász-softmax loss (default 0: none).
    """
    ratios, radii = _with_depth(ratios, radii, depth)
    ratios, radii, sa = _levels(ratios, radii, width, max_neighbors, in_channels, num_classes, dropout)
    head_channels = check_channels(head_channels, "head_channels", 0)
    fp = []
    for target in range(len(ratios) - 1, -1, -1):
        fp.append((4 * width,) * 3 if target == 0 else (8 * width, 4 * width) if target == 1 else (8 * width,) * 2)
    backbone = PointNet2(in_channels, sa, ratios, radii, max_neighbors, fp_channels=fp)
    head = SegmentationHead(4 * width, num_classes, head_channels, dropout,
                            class_weights=class_weights, lovasz_weight=lovasz_weight)
    return PointCloudModel(backbone, head)
