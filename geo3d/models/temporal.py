"""Temporal feature reuse for LiDAR streams: ``FeatureReuse`` and the ``local_seg`` model.

The point-cloud analogue of Skip-Convolutions (Habibian et al., CVPR 2021) and DeltaCNN
(Parger et al., CVPR 2022), which exist only for dense 2D CNNs. Written here: no library
does it for point clouds, and no sparse-convolution library (spconv, MinkowskiEngine,
torchsparse) is installed or runs on this CPU-only torch; the voxel keys, neighbour tables
and submanifold convolution are :mod:`geo3d.models.voxels`.

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
cached voxel with no current voxel within ``threshold`` is *gone*. Candidates are the
cached voxels in the voxel's own cell (preferred when close enough), else the nearest in
the 3x3x3 cells around it, so a threshold above one voxel is used only as far as that
window reaches; a missed candidate only recomputes more, it never reuses more. The stem
recomputes the new voxels; the first convolution grows that set by one cell (3x3x3)
around the new and the gone voxels, each later convolution by one cell around its input
set; the head recomputes the last set. Only those rows are computed; everything else is
reused. A voxel's reference centroid moves only when its stem is recomputed, so slow
drift cannot accumulate past ``threshold``. With ``threshold = 0`` a voxel is clean only
if its key and inputs are identical, so the result equals full recomputation (up to
float rounding of GEMMs over other row counts).

Cost of the bookkeeping (profiled against full recomputation, which needs the voxels and
one neighbour table too): one key lookup serves everything. The current and cached keys
are merged (two ``searchsorted``), and one 3x3x3 neighbour table of the current voxels in
that union gives both the convolutions' neighbours and every (current, cached) pair in a
window, from which matching, gone voxels and their neighbours follow with vectorised
scatters. Stage outputs live in per-stage stores addressed through one ``slot`` per
voxel, so reused rows are never copied: recomputed voxels get store rows no other voxel
uses. On the CPU, key lookups use numpy's ``searchsorted`` (~2x faster than torch's here),
the matching runs in numpy split over torch's threads (:func:`_match_numpy`;
:func:`_match_torch` is the same in torch ops for other devices), boolean masks are set
and read through numpy (:func:`_mark`, :func:`_true_rows`), the "never lend" flags are
judged only on recomputed voxels, and in eval mode without autograd the convolutions fold
batch norm into an in-place scale and shift (both paths gain). Together the reuse-only
steps went from ~31 to ~26 ms per 26k-voxel frame.
"""

from __future__ import annotations

import copy
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from geo3d._threads import for_row_ranges
from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_positive
from geo3d.models._layers import (check_channels, check_dropout, check_int,
                                  check_model_input, mlp)
from geo3d.models.heads.losses import check_class_weights, cross_entropy
from geo3d.models.registry import register
from geo3d.models.voxels import (_CENTRE, _COLUMN_DELTAS, SubmanifoldConv, VoxelSet, _cells_numpy,
                                 _gather, _neighbour_table, _padded, _searchsorted,
                                 voxelize)

__all__ = ["VoxelSet", "voxelize", "SubmanifoldConv", "LocalSegModel", "local_seg",
           "FeatureReuse", "is_reusable", "DEFAULT_THRESHOLD"]

#: Default change tolerance of :class:`FeatureReuse`, metres (``benchmarks/temporal.py``
#: on SyntheticSequences, 0.2 m voxels: the smallest tested value meeting the >= 3x MACs
#: and >= 2x wall-time targets, 4.2x and 2.08x in two runs; 0.5 m gave 1.9-2.0x; mIoU drop
#: 0.0 points on the validation and 0.6 on 8 test-split sequences).
DEFAULT_THRESHOLD = 0.6

_STAGED = ("voxelize", "run_stage", "is_local", "num_stages", "voxel_size")


# --------------------------------------------------------------------------- keys


def _union(keys: Tensor, other_keys: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The sorted union of two sorted unique key sets, merged with two ``searchsorted``.

    Returns:
        ``(union [U], row [U + 1], other_row [U + 1])``: the row in ``keys`` (``len(keys)``:
        absent) and in ``other_keys`` (``len(other_keys)``: absent) of each union key; the
        last entry stands for an empty cell (index ``U``).
    """
    parts = []
    for a, b in ((keys, other_keys), (other_keys, keys)):
        lo = _searchsorted(b, a)  # keys of b below each key of a
        shared = (torch.take(torch.cat([b, b.new_full((1,), -1)]), lo) == a).long()
        parts.append(torch.arange(a.shape[0], device=a.device) + lo - (torch.cumsum(shared, 0) - shared))
    pos, other_pos = parts
    u = keys.shape[0] + other_keys.shape[0] - int(shared.sum())
    union = keys.new_empty(u).index_copy_(0, pos, keys).index_copy_(0, other_pos, other_keys)
    row = torch.full((u + 1,), keys.shape[0], dtype=torch.long, device=keys.device)
    other_row = torch.full((u + 1,), other_keys.shape[0], dtype=torch.long, device=keys.device)
    row.index_copy_(0, pos, torch.arange(keys.shape[0], device=keys.device))
    other_row.index_copy_(0, other_pos, torch.arange(other_keys.shape[0], device=keys.device))
    return union, row, other_row


def _mark(mask: Tensor, index: Tensor) -> Tensor:
    """``mask[index] = True`` in place; on the CPU through numpy (torch's ``index_fill_``
    measured ~7x slower on 190k indices here)."""
    if mask.device.type == "cpu":
        mask.numpy()[index.numpy()] = True
        return mask
    return mask.index_fill_(0, index, True)


def _true_rows(mask: Tensor) -> Tensor:
    """``[K]`` long indices where the 1-D ``mask`` is True (numpy's ``flatnonzero`` on the
    CPU, ~10x faster than torch's ``nonzero`` here)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.nonzero().squeeze(1)


def _linear_macs(module: nn.Module) -> int:
    """Multiply-accumulates per row of the linear layers of ``module``."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


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
        class_weights: per-class weights of the cross-entropy (None: unweighted).

    Shapes:
        ``data.pos [N, 3]``, ``data.x [N, in_channels]``, ``data.batch [N]`` ->
        logits ``[N, num_classes]`` (every point gets its voxel's logits).
    """

    task = "segmentation"

    def __init__(self, in_channels: int, num_classes: int, width: int, depth: int,
                 voxel_size: float, head_channels: Sequence[int], dropout: float,
                 class_weights: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.voxel_size = voxel_size
        self.stem = mlp([3 + in_channels, width])
        self.convs = nn.ModuleList(SubmanifoldConv(width) for _ in range(depth))
        self.head = mlp([width, *head_channels, num_classes], dropout=dropout, plain_last=True)
        self.register_buffer("class_weights", check_class_weights(class_weights, num_classes),
                             persistent=False)

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

    def run_stage(self, s: int, h: Tensor, rows: Tensor, table: Optional[Tensor] = None,
                  slot: Optional[Tensor] = None) -> Tuple[Tensor, int]:
        """Rows ``rows`` of stage ``s``'s output and the MACs spent.

        Args:
            s: 0 stem, ``1..depth`` convolutions, ``depth + 1`` head.
            h: the previous stage's output (the voxel inputs for s = 0).
            rows: ``[R]`` voxels to compute.
            table: ``[27, R]`` neighbour voxels of ``rows`` (``M``: empty cell); local
                stages only.
            slot: ``[M]`` row of ``h`` of each voxel (default None: row ``i`` is voxel ``i``).
        """
        if self.is_local(s):
            return self.convs[s - 1](h, rows, table, slot)
        module = self.stem if s == 0 else self.head
        return module(_gather(h, rows, slot)), int(rows.numel()) * _linear_macs(module)

    def run(self, vox: VoxelSet) -> Tuple[Tensor, int]:
        """Voxel logits ``[M, num_classes]`` of a full computation and its MACs."""
        outputs, macs = self.run_all(vox)
        return outputs[-1], macs

    def run_all(self, vox: VoxelSet) -> Tuple[List[Tensor], int]:
        """Every stage's output ``[M, *]`` of a full computation and the MACs."""
        rows = torch.arange(vox.keys.shape[0], device=vox.keys.device)
        table = _neighbour_table(vox.keys, vox.keys)
        h, outputs, macs = vox.features, [], 0
        for s in range(self.num_stages):
            h, n = self.run_stage(s, h, rows, table if self.is_local(s) else None)
            outputs.append(h)
            macs += n
        return outputs, macs

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
        """Cross-entropy (weighted by ``class_weights``) against ``data.y`` ([N] long, -1
        ignored)."""
        return cross_entropy(logits, getattr(data, "y", None), self.class_weights)


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
    class_weights: Optional[Sequence[float]] = None,
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
        class_weights: per-class cross-entropy weights, ``num_classes`` positive numbers
            (default None; :func:`~geo3d.models.heads.losses.frequency_class_weights`).

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
                         head_channels, dropout, class_weights)


# --------------------------------------------------------------------------- reuse


def _allocate(stores: List[Tensor], slot: Tensor, rows: Tensor) -> List[Tensor]:
    """Give voxels ``rows`` store rows that no other voxel uses (``slot`` ``[M]``, the
    store row of each voxel, is updated in place): a voxel keeps its row when it is the
    only one mapped to it, else it gets a free row (one no voxel maps to). The stores grow
    (by at least a quarter) when too few rows are free; returns them."""
    k = stores[0].shape[0]
    shared = torch.bincount(slot, minlength=k).index_select(0, slot.index_select(0, rows)) > 1
    rows = rows[shared]
    r = rows.numel()
    if r == 0:
        return stores
    slot.index_fill_(0, rows, k)
    used = _mark(torch.zeros(k + 1, dtype=torch.bool, device=slot.device), slot)
    free = _true_rows(~used[:k])
    if free.numel() < r:
        extra = max(r - free.numel(), k // 4)
        stores = [torch.cat([s, s.new_zeros(extra, s.shape[1])]) for s in stores]
        free = torch.cat([free, torch.arange(k, k + extra, device=slot.device)])
    slot.index_copy_(0, rows, free[:r])
    return stores


def _class_ids(value: object) -> Tuple[int, ...]:
    """``recompute_classes`` checked: a sequence of class ids >= 0."""
    try:
        ids = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        ids = None
    if ids is None or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in ids):
        raise InvalidInputError(f"recompute_classes must be a sequence of class ids >= 0, got {value!r}")
    return ids


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
    stage and the MACs computed, and :attr:`last_rows` the voxels whose outputs were
    recomputed (the last stage's rows, ``[R]`` indices into the frame's voxels).

    Args:
        backbone: a model with the staged interface of :class:`LocalSegModel` (e.g.
            ``create("local_seg", ...)``); other registered models are not locally
            stable (see the module docstring) and raise.
        threshold: change tolerance in metres (default :data:`DEFAULT_THRESHOLD`); 0
            reproduces full recomputation.
        feature_threshold: tolerance on the mean ``x`` of a voxel, in ``x``'s units
            (default None: ``threshold``).
        recompute_classes: class ids whose cached voxels never lend their outputs
            (default: none). A current voxel near a cached voxel whose output's argmax is
            one of them is recomputed; the cached voxel still counts as geometry, so the
            voxels around it are recomputed only if it is gone. Pass the movable classes
            (car, pedestrian, cyclist): a cached voxel of a moving object that another
            surface now lies within ``threshold`` of would otherwise lend that surface its
            label (a trail of ghost objects behind moving cars).

    Shapes:
        ``frame.pos [N, 3]`` (sensor frame), ``frame.x [N, in_channels]``,
        ``frame.ego_pose [1, 4, 4]`` -> logits ``[N, num_classes]``, equal (threshold 0)
        to ``model(reuse.to_world(frame))``.
    """

    def __init__(self, backbone: nn.Module, threshold: float = DEFAULT_THRESHOLD,
                 feature_threshold: Optional[float] = None,
                 recompute_classes: Sequence[int] = ()) -> None:
        super().__init__()
        if not is_reusable(backbone):
            raise InvalidInputError(
                f"model {type(backbone).__name__} cannot be wrapped: FeatureReuse needs a model of "
                f"local layers with the staged interface of LocalSegModel (create('local_seg')); "
                f"FPS (pointnet2) and feature-space kNN (dgcnn) are global, not locally stable")
        check_positive(threshold, "threshold", allow_zero=True)
        if feature_threshold is not None:
            check_positive(feature_threshold, "feature_threshold", allow_zero=True)
        self.model = backbone  # the wrapped network (also :attr:`backbone`)
        self.threshold = float(threshold)
        self.feature_threshold = float(threshold if feature_threshold is None else feature_threshold)
        self.recompute_classes = _class_ids(recompute_classes)
        self.task = getattr(backbone, "task", "segmentation")
        self._cache: Optional[Dict[str, object]] = None
        self.stats: Dict[str, object] = {}
        self.last_rows: Optional[Tensor] = None

    @property
    def backbone(self) -> nn.Module:
        """The wrapped network (the same module as :attr:`model`)."""
        return self.model

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
        m = int(vox.keys.shape[0])
        cache = self._cache
        if cache is None or cache["keys"].shape[0] == 0 or m == 0:
            stores, macs = self.model.run_all(vox)
            slot = rows = torch.arange(m, device=vox.keys.device)
            rows_per_stage = [m] * len(stores)
            centroid, features, volatile = vox.centroid, vox.features, None
        else:
            match, clean, table, near_gone = self._plan(vox)
            fresh = _true_rows(~clean)
            stage_rows, subs, masks = self._grow(~clean, fresh, table, near_gone)
            rows = stage_rows[-1]  # every stage's rows are among these
            slot = cache["slot"].index_select(0, match)
            old = slot.index_select(0, rows)
            stores = _allocate(cache["stores"], slot, rows)
            new = slot.index_select(0, rows)
            moved = old != new
            h, h_slot, macs = vox.features, None, 0
            for s, store in enumerate(stores):
                keep = _true_rows(moved & ~masks[s].index_select(0, rows))
                if keep.numel():  # cached outputs of moved rows recomputed only at later stages
                    store.index_copy_(0, new.index_select(0, keep),
                                      store.index_select(0, old.index_select(0, keep)))
                if stage_rows[s].numel():
                    out, n = self.model.run_stage(s, h, stage_rows[s], subs[s], h_slot)
                    store.index_copy_(0, slot.index_select(0, stage_rows[s]), out)
                    macs += n
                h, h_slot = store, slot
            rows_per_stage = [int(r.numel()) for r in stage_rows]
            # references move only where the stem was recomputed
            centroid = cache["centroid"].index_select(0, match).index_copy_(
                0, fresh, vox.centroid.index_select(0, fresh))
            features = cache["features"].index_select(0, match).index_copy_(
                0, fresh, vox.features.index_select(0, fresh))
            volatile = None if cache["volatile"] is None else cache["volatile"].index_select(0, match)
        self._cache = {"keys": vox.keys, "centroid": centroid, "features": features,
                       "stores": stores, "slot": slot,
                       "volatile": self._volatile(stores[-1], slot, rows, volatile)}
        self.last_rows = rows
        self.stats = {"voxels": m, "rows": rows_per_stage, "macs": macs,
                      "dirty_fraction": rows_per_stage[-1] / max(m, 1)}
        return stores[-1].index_select(0, slot.index_select(0, vox.inverse))

    def _volatile(self, logits: Tensor, slot: Tensor, rows: Tensor,
                  reused: Optional[Tensor]) -> Optional[Tensor]:
        """``[M]`` whether each voxel's output argmax is in ``recompute_classes`` (None when
        no class is): judged on the recomputed ``rows``; the other voxels keep their cached
        outputs and so the flags in ``reused`` (``[M]``, None: every voxel was computed)."""
        if not self.recompute_classes:
            return None
        label = logits.index_select(0, slot.index_select(0, rows)).argmax(dim=1)
        flags = torch.isin(label, torch.tensor(self.recompute_classes, device=label.device))
        return flags if reused is None else reused.index_copy_(0, rows, flags)

    def _grow(self, dirty: Tensor, fresh: Tensor, table: Tensor,
              near_gone: Tensor) -> Tuple[List[Tensor], List[Optional[Tensor]], List[Tensor]]:
        """Rows of every stage: the stem recomputes ``fresh``; the first local stage adds
        the 3x3x3 cells around them and ``near_gone``, each later one the cells around
        its input rows. Returns the rows, their neighbour tables (local stages) and the
        ``[M]`` masks of the rows, per stage."""
        rows, sub = fresh, None
        stage_rows, subs, masks = [], [], []
        for s in range(self.model.num_stages):
            local = self.model.is_local(s)
            if local:
                if sub is None:
                    sub = table.index_select(1, rows)
                    dirty = dirty | near_gone
                dirty = _mark(torch.cat([dirty, dirty.new_zeros(1)]), sub.reshape(-1))[:-1]
                rows = _true_rows(dirty)
                sub = table.index_select(1, rows)
            stage_rows.append(rows)
            subs.append(sub if local else None)
            masks.append(dirty)
        return stage_rows, subs, masks

    def _plan(self, vox: VoxelSet) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Compare the voxels with the cache in one key lookup.

        Returns:
            ``(match [M] cached row, clean [M] bool, table [27, M] neighbour voxels (M:
            empty), near_gone [M] bool: a gone cached voxel lies in the 3x3x3 cells)``.
        """
        cache = self._cache
        union, row, ref_row = _union(vox.keys, cache["keys"])
        match_fn = _match_numpy if vox.keys.device.type == "cpu" else _match_torch
        match, best, table, near_gone = match_fn(
            vox.keys, union, row, ref_row, vox.centroid, cache["centroid"], cache["volatile"],
            self.threshold)
        clean = best <= self.threshold
        if vox.features.shape[1] > 3:  # mean x within the feature tolerance
            feat_gap = vox.features[:, 3:] - cache["features"].index_select(0, match)[:, 3:]
            clean &= feat_gap.abs().amax(1) <= self.feature_threshold
        return match, clean, table, near_gone


# --------------------------------------------------------------------------- matching
#
# Both functions below take the current keys ``[M]``, their union with the cached keys and
# the rows of each union key (``_union``), the current centroids, the cached reference
# centroids ``[M']``, the cached ``volatile`` mask (or None) and the threshold, and return
# ``(match [M], best [M], table [27, M], near_gone [M])``: the matched cached row (the
# cached voxel in the own cell when within the threshold and not volatile, else the
# nearest such one in the 3x3x3 window, ties to the lowest row; clamped to ``M' - 1``),
# the distance to the nearest lendable cached voxel (inf: none), the current voxels in the
# 27 cells (``M``: empty) and whether a gone cached voxel (no current centroid within the
# threshold) lies in the window. With threshold 0 only the own cell's cached voxel with
# the identical centroid matches (distance 0).


def _match_torch(keys: Tensor, union: Tensor, row: Tensor, ref_row: Tensor, centroid: Tensor,
                 ref: Tensor, volatile: Optional[Tensor], thr: float
                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The matching in torch ops (any device)."""
    m, mp = keys.shape[0], ref.shape[0]
    cells = _neighbour_table(union, keys).reshape(-1)  # [27 M] in the union
    table = row.index_select(0, cells).view(27, m)
    near = ref_row.index_select(0, cells)  # cached voxel in each cell (mp: none)
    pair = (near < mp).nonzero().squeeze(1)  # (current, cached) pairs in a 3x3x3 window
    i, j = pair % m, near.index_select(0, pair)
    gap = ref.index_select(0, j) - centroid.index_select(0, i)
    if thr == 0:  # the own cell's voxel with the identical centroid only
        same = (gap == 0).all(1) & (pair // m == _CENTRE)
        dist = torch.where(same, 0.0, math.inf).to(gap.dtype)
    else:
        dist = gap.norm(dim=1)
    # a cached voxel is kept while a current centroid lies within the threshold
    kept = torch.zeros(mp, dtype=torch.bool, device=j.device).index_fill_(0, j[dist <= thr], True)
    if volatile is not None:  # recompute_classes: still geometry, never lent
        dist = torch.where(volatile.index_select(0, j), math.inf, dist)
    own = near.view(27, m)[_CENTRE]
    own_ok = torch.zeros(m, dtype=torch.bool, device=j.device)
    own_ok.index_fill_(0, i[(dist <= thr) & (pair // m == _CENTRE)], True)
    best = torch.full((m,), math.inf, dtype=dist.dtype, device=dist.device)
    best.scatter_reduce_(0, i, dist, "amin")
    win = dist == best.index_select(0, i)
    nearest = torch.full((m,), mp, dtype=torch.long, device=j.device)
    nearest.scatter_reduce_(0, i[win], j[win], "amin")
    match = torch.where(own_ok, own, nearest).clamp_max(mp - 1)
    near_gone = torch.zeros(m, dtype=torch.bool, device=j.device)
    near_gone.index_fill_(0, i[~kept.index_select(0, j)], True)
    return match, best, table, near_gone


def _match_numpy(keys: Tensor, union: Tensor, row: Tensor, ref_row: Tensor, centroid: Tensor,
                 ref: Tensor, volatile: Optional[Tensor], thr: float, chunk: int = 16384
                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The matching on the CPU: numpy over chunks of up to ``chunk`` current voxels, one
    range per torch thread (23k voxels on 2 cores: 11.6 -> 8.4 ms against
    :func:`_match_torch`; one 16k chunk per thread instead of 4k ones takes fewer Python
    steps between numpy calls, which hold the GIL: 10.1 -> 8.3 ms for 26.6k voxels)."""
    k, u = keys.numpy(), union.numpy()
    padded, row_np, ref_row_np = _padded(u), row.numpy(), ref_row.numpy()
    cen, ref_np = centroid.numpy().T.copy(), ref.numpy().T.copy()  # [3, *]: one gather per axis
    vol = None if volatile is None else volatile.numpy()
    m, mp = k.shape[0], ref_np.shape[1]
    deltas = _COLUMN_DELTAS.numpy()[:, None]
    table = np.empty((27, m), dtype=np.int64)
    best = np.empty(m, dtype=cen.dtype)
    match = np.empty(m, dtype=np.int64)
    kept = np.zeros(mp, dtype=bool)
    pairs: List[Tuple[np.ndarray, np.ndarray]] = []

    def part(start: int, stop: int) -> None:
        cells = np.empty((9, 3, min(chunk, stop - start)), dtype=np.int64)
        for a in range(start, stop, chunk):
            z = min(a + chunk, stop)
            n = z - a
            c = cells[:, :, :n]
            _cells_numpy(u, padded, deltas + k[a:z], c)
            c = c.reshape(27, n)
            np.take(row_np, c, out=table[:, a:z])
            near = np.take(ref_row_np, c).reshape(-1)
            cell = np.flatnonzero(near < mp)  # (offset, voxel) cells holding a cached voxel
            j, i = near[cell], cell % n + a
            gap = np.take(ref_np, j, axis=1)  # take: ~4x faster than ref_np[:, j]
            gap -= np.take(cen, i, axis=1)
            if thr == 0:
                same = (gap == 0).all(0) & (cell // n == _CENTRE)
                dist = np.where(same, 0.0, np.inf).astype(cen.dtype)
            else:
                gap *= gap
                dist = np.sqrt(gap.sum(0))
            kept[j[dist <= thr]] = True  # idempotent writes: safe across threads
            pairs.append((i, j))
            if vol is not None:
                dist = np.where(vol[j], np.inf, dist)
            d27 = np.full(27 * n, np.inf, dtype=cen.dtype)
            d27[cell] = dist
            d27 = d27.reshape(27, n)
            b = d27.min(0)
            nearest = np.where(d27 == b, near.reshape(27, n), mp).min(0)
            own_ok = d27[_CENTRE] <= thr
            best[a:z] = b
            own = near[_CENTRE * n:(_CENTRE + 1) * n]
            match[a:z] = np.minimum(np.where(own_ok, own, nearest), mp - 1)

    for_row_ranges(part, m, 4096)
    near_gone = np.zeros(m, dtype=bool)
    for i, j in pairs:
        near_gone[i[~kept[j]]] = True
    return tuple(torch.from_numpy(a) for a in (match, best, table, near_gone))  # type: ignore
