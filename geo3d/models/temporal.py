"""Temporal feature reuse for LiDAR streams: ``FeatureReuse`` and the ``local_seg`` model.

The point-cloud analogue of Skip-Convolutions (Habibian et al., CVPR 2021) and DeltaCNN
(Parger et al., CVPR 2022), which exist only for dense 2D CNNs. Written here: no library
does it for point clouds, and no sparse-convolution library (spconv, MinkowskiEngine,
torchsparse) is installed or runs on this CPU-only torch; the submanifold convolution
below is a key lookup (``torch.searchsorted``) and a gather-GEMM-scatter per offset.

Why a model of our own. Reuse is exact only where every output depends on a bounded
spatial neighbourhood sampled deterministically. The registered backbones are not: FPS in
``pointnet2_*`` is global (one changed point can move every sample), ``dgcnn_*`` builds
kNN graphs in feature space (global) and pools a global feature, ``equivariant_*`` uses a
kNN graph whose reach is unbounded in sparse regions. So ``local_seg`` is a voxel network
of local layers only, and ``FeatureReuse`` wraps models that expose its staged interface
(``voxelize``, ``run_stage``, ``is_local``, ``num_stages``); anything else raises.

``local_seg`` (Graham et al., "3D Semantic Segmentation with Submanifold Sparse
Convolutional Networks", CVPR 2018, without the U-Net): points are voxelised
(``voxel_size`` metres, cells ``floor(p / v)``); each voxel's input is its centroid
offset in the cell (3 values, in cells) and the mean of ``x``; a point-wise stem, ``depth``
residual 3x3x3 submanifold convolutions (``h' = h + ReLU(BN(W [h_{i+o}]_o))``, missing
neighbours are zeros), a point-wise head; every point takes its voxel's logits.

``FeatureReuse`` runs it on a stream in the WORLD frame (``pos`` mapped by ``ego_pose``),
so static geometry keeps its voxels from frame to frame, which is the ego-motion
compensation. A spinning LiDAR resamples every surface each frame (measured on
SyntheticSequences at 0.2 m: ~45% of the occupied voxels differ between consecutive
frames), so change is judged per voxel against the cache with a tolerance ``threshold``
(metres): a voxel is *clean* if a cached voxel's reference centroid lies within
``threshold`` of its centroid and its mean features differ by at most
``feature_threshold`` (the cached voxel's features are reused); otherwise it is *new*. A
cached voxel with no current voxel within ``threshold`` is *gone*. Candidates are
looked up in the voxel's own cell, then in the 3x3x3 cells around it (key lookups:
measured ~2x cheaper here than scipy's kd-tree), so a threshold above one voxel is used
only as far as that window reaches; a missed candidate only recomputes more, it never
reuses more. The stem recomputes the new voxels; the first convolution grows that set by
one cell (3x3x3) around the new and the gone voxels, each later convolution by one cell
around its input set; the head recomputes the last set. Only those rows are computed;
everything else is copied from the cache. A voxel's reference centroid moves only when
its stem is recomputed, so slow drift cannot accumulate past ``threshold``. With
``threshold = 0`` a voxel is clean only if its key and inputs are identical, so the
result equals full recomputation (up to float rounding of GEMMs over other row counts).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_positive
from geo3d.models._layers import (check_channels, check_dropout, check_int,
                                  check_model_input, mlp)
from geo3d.models.heads.classification import cross_entropy
from geo3d.models.registry import register

__all__ = ["VoxelSet", "voxelize", "SubmanifoldConv", "LocalSegModel", "local_seg",
           "FeatureReuse", "is_reusable", "DEFAULT_THRESHOLD"]

#: Default change tolerance of :class:`FeatureReuse`, metres (``benchmarks/temporal.py``:
#: the smallest tested value giving >= 3x fewer MACs on SyntheticSequences).
DEFAULT_THRESHOLD = 0.5

_BITS = 18  # bits per cell coordinate in a voxel key; the batch index takes the rest
_HALF = 1 << (_BITS - 1)
_MARGIN = 8  # cells kept free at the key range's ends, so offsets never carry over
_MAX_ITEMS = 1 << (63 - 3 * _BITS)
_OFFSETS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.long)
_COLUMN_DELTAS = (_OFFSETS[::3, 0] << (2 * _BITS)) + (_OFFSETS[::3, 1] << _BITS)  # 9 (dx, dy)
_CENTRE = 13  # index of the (0, 0, 0) offset
_STAGED = ("voxelize", "run_stage", "is_local", "num_stages", "voxel_size")
_REACH = 1  # cells searched around a voxel for its match in the cache (3x3x3 window)


# --------------------------------------------------------------------------- voxels


@dataclass(frozen=True)
class VoxelSet:
    """The occupied voxels of a cloud.

    Attributes:
        keys: ``[M]`` long voxel keys, sorted ascending (batch item, then x, y, z cell).
        centroid: ``[M, 3]`` mean point of each voxel (the input's frame and dtype).
        features: ``[M, 3 + F]`` network input: centroid offset in the cell (in cells,
            ``[-0.5, 0.5)``) and the mean of ``x``.
        inverse: ``[N]`` voxel of each point.
        batch: ``[M]`` batch item of each voxel.
    """

    keys: Tensor
    centroid: Tensor
    features: Tensor
    inverse: Tensor
    batch: Tensor


def voxelize(pos: Tensor, x: Optional[Tensor], batch: Tensor, voxel_size: float) -> VoxelSet:
    """Voxelise points into cells ``floor(pos / voxel_size)`` per batch item.

    Args:
        pos: ``[N, 3]`` points (checked by the caller).
        x: ``[N, F]`` point features or None.
        batch: ``[N]`` sorted batch index.
        voxel_size: cell edge, metres.

    Returns:
        The :class:`VoxelSet`.

    Raises:
        InvalidInputError: points farther than ``(2**17 - 8) * voxel_size`` from the
            origin, or more than 512 batch items.
    """
    cells = torch.floor(pos.detach() / voxel_size)
    if cells.numel() and float(cells.abs().max()) >= _HALF - _MARGIN:
        raise InvalidInputError(
            f"pos reaches {float(pos.detach().abs().max()):.1f} m from the origin; voxel keys "
            f"hold at most {(_HALF - _MARGIN) * voxel_size:.1f} m at voxel_size={voxel_size}")
    if batch.numel() and int(batch[-1]) >= _MAX_ITEMS:
        raise InvalidInputError(f"data.batch has {int(batch[-1]) + 1} items; at most {_MAX_ITEMS}")
    c = cells.long() + _HALF
    raw = (batch << (3 * _BITS)) | (c[:, 0] << (2 * _BITS)) | (c[:, 1] << _BITS) | c[:, 2]
    keys, inverse = torch.unique(raw, sorted=True, return_inverse=True)
    m = keys.shape[0]
    count = torch.bincount(inverse, minlength=m).to(pos.dtype).unsqueeze(1)
    centroid = torch.zeros(m, 3, dtype=pos.dtype, device=pos.device).index_add_(0, inverse, pos) / count
    mask = (1 << _BITS) - 1
    corner = torch.stack([(keys >> (2 * _BITS)) & mask, (keys >> _BITS) & mask, keys & mask], 1)
    offset = centroid / voxel_size - (corner - _HALF).to(pos.dtype) - 0.5
    feats = [offset]
    if x is not None:
        feats.append(torch.zeros(m, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, inverse, x) / count)
    return VoxelSet(keys, centroid, torch.cat(feats, 1), inverse, keys >> (3 * _BITS))


def _neighbour_table(keys: Tensor, base: Tensor) -> Tensor:
    """``[27, R]`` index in ``keys`` of the 3x3x3 cells around each ``base`` key, offsets
    in the order of ``_OFFSETS`` (``len(keys)``: empty cell).

    ``keys`` are sorted with z in the lowest bits, so the cells above and below a cell are
    its neighbours in ``keys``: one ``searchsorted`` per (dx, dy) column finds all three.
    """
    m = keys.shape[0]
    big = torch.iinfo(torch.long).max
    padded = torch.cat([keys, keys.new_full((2,), big)])  # padded[-1] is big as well
    q = _COLUMN_DELTAS.to(keys.device).unsqueeze(1) + base  # [9, R]
    p = torch.searchsorted(keys, q)
    at = torch.take(padded, p)
    none = torch.full_like(p, m)
    mid = torch.where(at == q, p, none)
    below = torch.where(torch.take(padded, p - 1) == q - 1, p - 1, none)
    up_at = torch.where(at == q, p + 1, p)
    above = torch.where(torch.take(padded, up_at) == q + 1, up_at, none)
    return torch.stack([below, mid, above], 1).reshape(27, base.shape[0])


def _same_key(keys: Tensor, points: Tensor, other_keys: Tensor, other: Tensor,
              threshold: float) -> Tuple[Tensor, Tensor]:
    """Row of each voxel's key in ``other_keys`` (clamped) and whether it is there with a
    centroid within ``threshold`` (``threshold = 0``: the identical centroid)."""
    same = torch.searchsorted(other_keys, keys).clamp_max(other_keys.shape[0] - 1)
    ok = torch.take(other_keys, same) == keys
    gap = other.index_select(0, same) - points
    ok &= (gap == 0).all(1) if threshold == 0 else gap.norm(dim=1) <= threshold
    return same, ok


def _nearest_in_window(keys: Tensor, points: Tensor, query_keys: Tensor, query: Tensor,
                       reach: int) -> Tuple[Tensor, Tensor]:
    """The nearest of ``points`` (voxel ``keys``, sorted) to each ``query`` among the
    voxels within ``reach`` cells of the query's own cell (a ``(2 reach + 1)^3`` window).

    Each (dx, dy) column of the window is one ``searchsorted``: its cells are consecutive
    in ``keys``. Distances are computed for the occupied cells only.

    Returns:
        ``(index [R], distance [R])``; index 0 and distance ``inf`` where the window is
        empty. Among equal distances the lowest index wins.
    """
    m, r = keys.shape[0], query_keys.shape[0]
    width = 2 * reach + 1
    big = torch.iinfo(torch.long).max
    padded = torch.cat([keys, keys.new_full((width,), big)])
    span = torch.arange(-reach, reach + 1, device=keys.device)
    cols = ((span.view(-1, 1) << (2 * _BITS)) + (span.view(1, -1) << _BITS)).reshape(-1, 1)
    q = query_keys + cols  # [width^2, R] column centres
    lo = torch.searchsorted(keys, q - reach)
    cand = (lo.unsqueeze(1) + span.view(1, -1, 1) + reach).reshape(-1)  # [width^3 * R]
    hi = (q + reach).repeat_interleave(width, 0).reshape(-1)
    slot = (torch.take(padded, cand) <= hi).nonzero().squeeze(1)
    cand, row = cand.index_select(0, slot), slot % r
    dist = (points.index_select(0, cand) - query.index_select(0, row)).norm(dim=1)
    best = torch.full((r,), float("inf"), dtype=dist.dtype, device=dist.device)
    best.scatter_reduce_(0, row, dist, "amin")
    win = dist == best.index_select(0, row)
    index = torch.full((r,), max(m - 1, 0), dtype=torch.long, device=keys.device)
    index.scatter_reduce_(0, row[win], cand[win], "amin")
    return torch.where(torch.isfinite(best), index, torch.zeros_like(index)), best


def _rows(h: Tensor, rows: Tensor) -> Tensor:
    """``h[rows]`` without a copy when ``rows`` are all rows (sorted, unique)."""
    return h if rows.numel() == h.shape[0] else h.index_select(0, rows)


# --------------------------------------------------------------------------- layers


class SubmanifoldConv(nn.Module):
    """Residual 3x3x3 submanifold sparse convolution on voxel rows.

    ``h_i' = h_i + ReLU(BN(sum_o W_o h_{i+o}))`` over the occupied cells among the 27
    around ``i`` (Graham et al. 2018). Computed as gather, GEMM, scatter-add per offset
    over the existing neighbour pairs only, so the work is ``pairs * C * C`` MACs.

    Args:
        channels: feature width ``C`` (in and out).

    Shapes:
        ``h [M, C]`` (all voxels), ``rows [R]``, ``table [R, 27]`` (``M``: empty cell)
        -> ``([R, C], MACs computed)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(27, channels, channels))
        bound = 1.0 / math.sqrt(7 * channels)  # ~7 of 27 cells are occupied on surfaces
        nn.init.uniform_(self.weight, -bound, bound)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, h: Tensor, rows: Tensor, table: Tensor) -> Tuple[Tensor, int]:
        c, r = h.shape[1], rows.numel()
        centre = _rows(h, rows)
        out = centre @ self.weight[_CENTRE]
        flat = table.reshape(-1)
        pairs = (flat < h.shape[0]).nonzero().squeeze(1)  # by offset, then row
        counts = torch.bincount(pairs // r, minlength=27).tolist() if r else [0] * 27
        start = 0
        for o, n in enumerate(counts):
            if n and o != _CENTRE:
                at = pairs[start : start + n]
                src = h.index_select(0, flat.index_select(0, at))
                out.index_add_(0, at - o * r, src @ self.weight[o])
            start += n
        return centre + F.relu(self.norm(out)), int(pairs.numel()) * c * c


def _linear_macs(module: nn.Module) -> int:
    """Multiply-accumulates per row of the linear layers of ``module``."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


class _Tables:
    """Neighbour tables of one voxel set, looked up once per row on demand."""

    def __init__(self, keys: Tensor) -> None:
        self.keys = keys
        self.full: Optional[Tensor] = None  # [27, M] when every row was asked at once
        self.part: Optional[Tensor] = None  # [M, 27] rows filled on demand
        self.have = torch.zeros(keys.shape[0], dtype=torch.bool, device=keys.device)
        self.last: Optional[Tuple[Tensor, Tensor]] = None

    def rows(self, rows: Tensor) -> Tensor:
        """``[27, R]`` neighbours of ``rows`` (``M``: empty cell); the last answer is kept
        for a repeated call with the same ``rows`` tensor."""
        if self.last is not None and self.last[0] is rows:
            return self.last[1]
        table = self._rows(rows)
        self.last = (rows, table)
        return table

    def _rows(self, rows: Tensor) -> Tensor:
        m = self.keys.shape[0]
        if self.full is None and rows.numel() == m:
            self.full = _neighbour_table(self.keys, self.keys)
        if self.full is not None:
            return self.full if rows.numel() == m else self.full.index_select(1, rows)
        if self.part is None:
            self.part = torch.empty((m, 27), dtype=torch.long, device=self.keys.device)
        missing = rows[~self.have[rows]]
        if missing.numel():
            self.part.index_copy_(0, missing, _neighbour_table(self.keys, self.keys[missing]).T)
            self.have[missing] = True
        return self.part.index_select(0, rows).T.contiguous()


class LocalSegModel(nn.Module):
    """Voxel segmentation network of local layers only (see the module docstring).

    Args:
        in_channels: width of ``data.x`` (0: ``pos`` only).
        num_classes: number of classes.
        width: feature width ``C``.
        depth: number of submanifold convolutions (receptive field: ``depth`` cells).
        voxel_size: voxel edge, metres.
        head_channels: hidden widths of the point-wise head.
        dropout: head dropout.

    Shapes:
        ``data.pos [N, 3]``, ``data.x [N, in_channels]``, ``data.batch [N]`` ->
        logits ``[N, num_classes]`` (every point gets its voxel's logits).
    """

    task = "segmentation"

    def __init__(self, in_channels: int, num_classes: int, width: int, depth: int,
                 voxel_size: float, head_channels: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.voxel_size = voxel_size
        self.stem = mlp([3 + in_channels, width])
        self.convs = nn.ModuleList(SubmanifoldConv(width) for _ in range(depth))
        self.head = mlp([width, *head_channels, num_classes], dropout=dropout, plain_last=True)

    # the staged interface FeatureReuse relies on -------------------------------------
    def voxelize(self, pos: Tensor, x: Optional[Tensor], batch: Tensor) -> VoxelSet:
        """The voxels the network runs on."""
        return voxelize(pos, x, batch, self.voxel_size)

    @property
    def num_stages(self) -> int:
        """Stem, ``depth`` convolutions, head."""
        return len(self.convs) + 2

    def is_local(self, s: int) -> bool:
        """Whether stage ``s`` reads the 3x3x3 neighbourhood (else only its own row)."""
        return 1 <= s <= len(self.convs)

    def run_stage(self, s: int, h: Tensor, rows: Tensor, tables: _Tables) -> Tuple[Tensor, int]:
        """Rows ``rows`` of stage ``s``'s output and the MACs spent.

        Args:
            s: 0 stem, ``1..depth`` convolutions, ``depth + 1`` head.
            h: the previous stage's output over all voxels (the voxel inputs for s = 0).
            rows: ``[R]`` voxels to compute.
            tables: neighbour tables of the voxel set.
        """
        if self.is_local(s):
            return self.convs[s - 1](h, rows, tables.rows(rows))
        module = self.stem if s == 0 else self.head
        return module(_rows(h, rows)), int(rows.numel()) * _linear_macs(module)

    def run(self, vox: VoxelSet) -> Tuple[Tensor, int]:
        """Voxel logits ``[M, num_classes]`` of a full computation and its MACs."""
        rows = torch.arange(vox.keys.shape[0], device=vox.keys.device)
        tables, h, macs = _Tables(vox.keys), vox.features, 0
        for s in range(self.num_stages):
            h, n = self.run_stage(s, h, rows, tables)
            macs += n
        return h, macs

    # -----------------------------------------------------------------------------------
    def forward(self, data: object) -> Tensor:
        dtype = next(self.parameters()).dtype
        pos, x, batch, _ = check_model_input(data, self.in_channels, dtype)
        vox = self.voxelize(pos, x, batch)
        return self.run(vox)[0].index_select(0, vox.inverse)

    def count_macs(self, data: object) -> int:
        """MACs of ``self(data)`` (linear layers and convolution pairs actually computed)."""
        dtype = next(self.parameters()).dtype
        pos, x, batch, _ = check_model_input(data, self.in_channels, dtype)
        with torch.no_grad():
            return self.run(self.voxelize(pos, x, batch))[1]

    def loss(self, logits: Tensor, data: object) -> Tensor:
        """Cross-entropy against ``data.y`` ([N] long, -1 ignored)."""
        return cross_entropy(logits, getattr(data, "y", None))


@register("local_seg")
def local_seg(
    *,
    in_channels: int = 0,
    num_classes: int,
    width: int = 32,
    depth: int = 3,
    voxel_size: float = 0.2,
    head_channels: Sequence[int] = (32,),
    dropout: float = 0.0,
) -> LocalSegModel:
    """Local voxel segmentation network that :class:`FeatureReuse` can wrap exactly.

    Args:
        in_channels: width of ``data.x`` (default 0).
        num_classes: number of classes.
        width: feature width (default 32).
        depth: 3x3x3 submanifold convolutions (default 3).
        voxel_size: voxel edge in metres (default 0.2).
        head_channels: hidden widths of the head (default ``(32,)``).
        dropout: head dropout (default 0).

    Returns:
        A :class:`LocalSegModel` (``task == "segmentation"``), logits ``[N, num_classes]``.
    """
    check_int(in_channels, "in_channels", 0)
    check_int(num_classes, "num_classes", 1)
    check_int(width, "width", 1)
    check_int(depth, "depth", 1)
    check_positive(voxel_size, "voxel_size")
    head_channels = check_channels(head_channels, "head_channels", 0)
    check_dropout(dropout)
    return LocalSegModel(in_channels, num_classes, width, depth, float(voxel_size),
                         head_channels, dropout)


# --------------------------------------------------------------------------- reuse


def is_reusable(model: object) -> bool:
    """Whether :class:`FeatureReuse` can wrap ``model``: it has the staged interface of
    :class:`LocalSegModel` (``voxelize``, ``run_stage``, ``is_local``, ``num_stages``,
    ``voxel_size``), i.e. it is built from local layers only."""
    return all(hasattr(model, a) for a in _STAGED)


def _world(frame: object, dtype: torch.dtype) -> Tensor:
    """``frame.pos`` mapped to the world frame by ``frame.ego_pose`` (world-from-sensor)."""
    pose = getattr(frame, "ego_pose", None)
    if not isinstance(pose, Tensor) or pose.shape not in ((1, 4, 4), (4, 4)):
        got = list(pose.shape) if isinstance(pose, Tensor) else type(pose).__name__
        raise InvalidInputError(f"frame.ego_pose must be a [1, 4, 4] world-from-sensor tensor, got {got}")
    pose = pose.reshape(4, 4).to(torch.float64)
    if not bool(torch.isfinite(pose).all()):
        raise InvalidInputError("frame.ego_pose contains NaN or Inf")
    pos = frame.pos.to(torch.float64)
    return (pos @ pose[:3, :3].T + pose[:3, 3]).to(dtype)


class FeatureReuse(nn.Module):
    """Run a local model on a stream, recomputing only voxels whose neighbourhood changed.

    Call it on the frames of one sequence in order; :meth:`reset` (or a frame whose
    ``frame`` attribute is 0) starts a new sequence. Inference only (eval mode, no
    gradients). After each call, :attr:`stats` holds the voxels, the rows computed per
    stage and the MACs computed.

    Args:
        model: a model with the staged interface of :class:`LocalSegModel` (e.g.
            ``create("local_seg", ...)``); other registered models are not locally
            stable (see the module docstring) and raise.
        threshold: change tolerance in metres (default :data:`DEFAULT_THRESHOLD`); 0
            reproduces full recomputation.
        feature_threshold: tolerance on the mean ``x`` of a voxel, in ``x``'s units
            (default None: ``threshold``).

    Shapes:
        ``frame.pos [N, 3]`` (sensor frame), ``frame.x [N, in_channels]``,
        ``frame.ego_pose [1, 4, 4]`` -> logits ``[N, num_classes]``, equal (threshold 0)
        to ``model(reuse.to_world(frame))``.
    """

    def __init__(self, model: nn.Module, threshold: float = DEFAULT_THRESHOLD,
                 feature_threshold: Optional[float] = None) -> None:
        super().__init__()
        if not is_reusable(model):
            raise InvalidInputError(
                f"model {type(model).__name__} cannot be wrapped: FeatureReuse needs a model of "
                f"local layers with the staged interface of LocalSegModel (create('local_seg')); "
                f"FPS (pointnet2) and feature-space kNN (dgcnn) are global, not locally stable")
        check_positive(threshold, "threshold", allow_zero=True)
        if feature_threshold is not None:
            check_positive(feature_threshold, "feature_threshold", allow_zero=True)
        self.model = model
        self.threshold = float(threshold)
        self.feature_threshold = float(threshold if feature_threshold is None else feature_threshold)
        self.task = getattr(model, "task", "segmentation")
        self._cache: Optional[Dict[str, object]] = None
        self.stats: Dict[str, object] = {}

    def reset(self) -> None:
        """Forget the cached frame (the next call recomputes everything)."""
        self._cache = None

    def to_world(self, frame: object) -> object:
        """A copy of ``frame`` with ``pos`` in the world frame: the model's input."""
        out = copy.copy(frame)
        out.pos = _world(frame, frame.pos.dtype)
        return out

    @torch.no_grad()
    def forward(self, frame: object) -> Tensor:
        if self.training:
            raise InvalidInputError("FeatureReuse is for inference: call .eval() first")
        dtype = next(self.model.parameters()).dtype
        pos, x, batch, num = check_model_input(frame, self.model.in_channels, dtype)
        if num != 1:
            raise InvalidInputError(f"FeatureReuse takes one frame at a time, got a batch of {num}")
        if getattr(frame, "frame", None) == 0:
            self.reset()
        vox = self.model.voxelize(_world(frame, dtype), x, batch)
        tables = _Tables(vox.keys)
        dirty, gone_keys, match = self._changes(vox)
        h, outputs, rows_per_stage, macs = vox.features, [], [], 0
        rows = fresh = dirty.nonzero().squeeze(1)
        for s in range(self.model.num_stages):
            if self.model.is_local(s) and match is not None:  # grow by the neighbourhood
                nbrs = tables.rows(rows)
                if s == 1 and gone_keys.numel():
                    nbrs = torch.cat([nbrs.reshape(-1), _neighbour_table(vox.keys, gone_keys).reshape(-1)])
                grown = torch.cat([dirty, dirty.new_zeros(1)])
                dirty = grown.index_fill_(0, nbrs.reshape(-1), True)[:-1]
                rows = dirty.nonzero().squeeze(1)
            if match is None:
                out, n = self.model.run_stage(s, h, rows, tables)
            else:
                out, n = self._cache["outputs"][s].index_select(0, match), 0
                if rows.numel():
                    new, n = self.model.run_stage(s, h, rows, tables)
                    out.index_copy_(0, rows, new)
            outputs.append(out)
            rows_per_stage.append(int(rows.numel()))
            macs += n
            h = out
        self._store(vox, outputs, match, fresh)
        m = int(vox.keys.shape[0])
        self.stats = {"voxels": m, "rows": rows_per_stage, "macs": macs,
                      "dirty_fraction": rows_per_stage[-1] / max(m, 1)}
        return h.index_select(0, vox.inverse)

    def _changes(self, vox: VoxelSet):
        """``(dirty [M] bool, gone cached keys, match [M] cached row or None)``."""
        m = vox.keys.shape[0]
        cache = self._cache
        if cache is None or cache["keys"].shape[0] == 0 or m == 0:
            return torch.ones(m, dtype=torch.bool, device=vox.keys.device), vox.keys[:0], None
        ref, ref_feat, ref_keys = cache["centroid"], cache["features"], cache["keys"]
        match, clean = self._match(vox.keys, vox.centroid, ref_keys, ref)
        if vox.features.shape[1] > 3:  # mean x within the feature tolerance
            gap = vox.features[:, 3:] - ref_feat.index_select(0, match)[:, 3:]
            clean &= gap.abs().amax(1) <= self.feature_threshold
        # a cached voxel is still there if a clean voxel took its features, or a current
        # centroid is within the threshold (in its own cell, else in the window)
        _, kept = _same_key(ref_keys, ref, vox.keys, vox.centroid, self.threshold)
        kept.index_fill_(0, match[clean], True)
        rest = (~kept).nonzero().squeeze(1)
        if rest.numel() and self.threshold > 0:
            _, dist = _nearest_in_window(vox.keys, vox.centroid, ref_keys.index_select(0, rest),
                                         ref.index_select(0, rest), self._reach())
            kept.index_copy_(0, rest, dist <= self.threshold)
        return ~clean, ref_keys[~kept], match

    def _reach(self) -> int:
        """Cells searched around a voxel for its match (at most ``_REACH``)."""
        return min(_REACH, math.ceil(self.threshold / self.model.voxel_size - 1e-9))

    def _match(self, keys: Tensor, points: Tensor, other_keys: Tensor,
               other: Tensor) -> Tuple[Tensor, Tensor]:
        """For each voxel, ``(row in other, found)``: the ``other`` voxel with the same key
        if its centroid is within the threshold (threshold 0: identical), else the nearest
        ``other`` centroid within ``_REACH`` cells, found if within the threshold."""
        same, ok = _same_key(keys, points, other_keys, other, self.threshold)
        rest = (~ok).nonzero().squeeze(1)
        if rest.numel() and self.threshold > 0:  # the own cell does not match: the window
            near, dist = _nearest_in_window(other_keys, other, keys.index_select(0, rest),
                                            points.index_select(0, rest), self._reach())
            same.index_copy_(0, rest, near)
            ok.index_copy_(0, rest, dist <= self.threshold)
        return same, ok

    def _store(self, vox: VoxelSet, outputs: List[Tensor], match: Optional[Tensor],
               fresh: Tensor) -> None:
        centroid, features = vox.centroid, vox.features
        if match is not None:  # references move only where the stem was recomputed
            centroid = self._cache["centroid"].index_select(0, match)
            features = self._cache["features"].index_select(0, match)
            centroid.index_copy_(0, fresh, vox.centroid.index_select(0, fresh))
            features.index_copy_(0, fresh, vox.features.index_select(0, fresh))
        self._cache = {"keys": vox.keys, "centroid": centroid, "features": features,
                       "outputs": outputs}
