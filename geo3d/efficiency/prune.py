"""``prune``: magnitude, Learned Threshold Pruning and structured channel pruning.

* ``magnitude``: ``torch.nn.utils.prune`` (``l1_unstructured`` per layer, or
  ``global_unstructured`` over all prunable weights) made permanent with
  ``prune.remove``. Prunable weights: every parameter named ``weight`` of a module that
  is not a normalisation layer: ``nn.Linear``/conv, e3nn's ``o3.Linear`` and radial MLPs.
  Each e3nn weight scales a whole irreps path, so this keeps e3nn models equivariant.
* ``ltp``: Learned Threshold Pruning (Azarian, Bhalgat, Lee & Blankevoort, "Learned
  Threshold Pruning", arXiv:2003.00075, 2020), our own code on
  ``torch.nn.utils.parametrize``: each prunable weight is replaced by ``w * sigmoid((w^2 -
  tau_l) / T_l)`` with a learned threshold ``tau_l`` per layer, trained on
  ``model.loss + l0_weight * sum_l sum_i sigmoid(...) / sum_l numel_l`` (the soft L0
  penalty: the soft fraction of weights kept over the whole model, so large layers, which
  hold most of the size, are pressed hardest); then the hard mask ``w^2 > tau_l`` is
  applied. Thresholds and temperature are in units of the layer's initial ``mean(w^2)``,
  so one learning rate and temperature suit every layer.
* ``finetune_steps`` (magnitude and LTP): after the mask is fixed, the surviving weights
  train on ``model.loss`` with the pruned ones held at zero (a fixed-mask
  parametrization), the usual prune-then-fine-tune recipe.
* ``structured``: removes whole channels (the rows of a producing ``nn.Linear``, its
  BatchNorm entries, and the matching columns of every consumer), a smaller dense model.
  Dependencies are declared per architecture (no tracer handles message passing):
  DGCNN (EdgeConv MLPs; a conv's output feeds the next conv's split ``[x_i, x_j - x_i]``
  weight twice, the embedding concat and the segmentation head's local block; the
  embedding feeds the pooled context) and PointNet++ (set-abstraction MLPs feed the next
  level, the skip concat of a propagation step and the global PointNet; propagation MLPs
  feed the next step or the head). Channels are ranked by ``|gamma| / sqrt(var + eps) *
  ||W_row||_2`` (BatchNorm scale times row norm; Liu et al. 2017, "network slimming").
  For the e3nn model it removes whole irreps multiplicities: a hidden channel ``u`` of an
  irrep ``(l, p)`` is removed from every layer (all ``2l + 1`` components, the weights that
  produce it and its gate, its tensor-product paths and radial weights, and its consumers),
  so equivariance holds exactly; it also removes ``amount`` of the hidden units of every
  radial MLP (invariant edge lengths in: equivariance still exact), ranked by the product
  of the norms of their incoming and outgoing weights; every layer is rebuilt with the
  smaller irreps and radial widths and the kept weights
  (:mod:`geo3d.efficiency._prune_e3nn`): a smaller model that computes what the original
  computes with those channels and the removed units' outgoing weights zeroed (a changed
  function, as after channel pruning of DGCNN: fine-tune the result). For GEM-CNN it
  removes whole regular fields (rho-fields): inside the residual blocks and on the U-Net's
  residual streams, tracked through the skips, the decoder concatenations and the output
  convolution, and rebuilds every layer smaller (:mod:`geo3d.efficiency._prune_gem`):
  gauge equivariance holds exactly.

``prune(model, config, example)`` returns a new model (a deep copy); the input is never
modified. Models the structured method does not know raise ``InvalidInputError``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune

from geo3d.efficiency._batches import cycle_batches
from geo3d.efficiency._prune_e3nn import prune_irreps_copies
from geo3d.efficiency._prune_gem import keep_norm_entries, prune_gem_fields
from geo3d.errors import InvalidInputError

__all__ = ["PruneConfig", "prune", "prunable_weights", "sparsity", "compression_ratio"]

_METHODS = ("magnitude", "ltp", "structured")
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    """What to prune and how.

    Args:
        method: ``"magnitude"`` (default), ``"ltp"`` or ``"structured"``.
        amount: fraction removed, in ``[0, 1)``: of the prunable weights (magnitude), or
            of the channels of every prunable group (structured). Default 0.5. LTP finds
            its own sparsity from ``l0_weight``.
        scope: magnitude only: ``"layer"`` (default, ``amount`` of each layer) or
            ``"global"`` (the smallest weights of all layers together).
        steps: LTP training steps (default 200).
        lr: LTP learning rate of the weights (default 1e-3, Adam).
        threshold_lr: LTP learning rate of the thresholds, in units of each layer's
            initial ``mean(w^2)`` (default 1e-2). Adam moves a threshold by about this
            much per step whatever the penalty's size, so ``steps * threshold_lr`` caps how
            high it can rise; ``l0_weight`` sets where the thresholds settle only below that
            cap. Measured on ``gem_seg``: at 0.05 and 150 steps every large layer stopped at
            9-11% of its weights, soft-L0 weight 3 or 5 alike.
        l0_weight: LTP weight of the soft-L0 penalty, the soft fraction of all prunable
            weights kept (default 1.0; larger: sparser).
        temperature: LTP sigmoid temperature relative to ``mean(w^2)`` (default 0.1).
        finetune_steps: magnitude and LTP: steps of training (Adam, ``lr``) of the
            surviving weights after pruning, the pruned ones held at zero (default 0;
            needs training data as ``example`` and a model with ``loss``).
    """

    method: str = "magnitude"
    amount: float = 0.5
    scope: str = "layer"
    steps: int = 200
    lr: float = 1e-3
    threshold_lr: float = 1e-2
    l0_weight: float = 1.0
    temperature: float = 0.1
    finetune_steps: int = 0

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise InvalidInputError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.scope not in ("layer", "global"):
            raise InvalidInputError(f"scope must be 'layer' or 'global', got {self.scope!r}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, (int, float)) \
                or not 0 <= self.amount < 1:
            raise InvalidInputError(f"amount must be a number in [0, 1), got {self.amount!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise InvalidInputError(f"steps must be an integer >= 1, got {self.steps!r}")
        v = self.finetune_steps
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidInputError(f"finetune_steps must be an integer >= 0, got {v!r}")
        if v and self.method == "structured":
            raise InvalidInputError("finetune_steps is for method='magnitude' or 'ltp'; fine-tune a "
                                    "structured result with geo3d.tasks.train")
        for name in ("lr", "threshold_lr", "temperature"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
                raise InvalidInputError(f"{name} must be a finite positive number, got {v!r}")
        v = self.l0_weight
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
            raise InvalidInputError(f"l0_weight must be a finite number >= 0, got {v!r}")


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be an nn.Module, got {type(model).__name__}")
    return model


def prunable_weights(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(module name, module)`` of every module with a prunable ``weight`` parameter."""
    return [(name, m) for name, m in model.named_modules()
            if not isinstance(m, _NORMS) and isinstance(m._parameters.get("weight"), nn.Parameter)
            and m._parameters["weight"].numel() > 0]


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries over the prunable weights."""
    ws = [m.weight.detach() for _, m in prunable_weights(model)]
    total = sum(w.numel() for w in ws)
    return sum(int((w == 0).sum()) for w in ws) / total if total else 0.0


def compression_ratio(model: nn.Module) -> float:
    """Prunable weights / non-zero prunable weights (inf when all are zero)."""
    ws = [m.weight.detach() for _, m in prunable_weights(model)]
    nz = sum(int(torch.count_nonzero(w)) for w in ws)
    return sum(w.numel() for w in ws) / nz if nz else float("inf")


def prune(model: nn.Module, config: PruneConfig, example: Any = None) -> nn.Module:
    """Return a pruned copy of ``model`` (the input is left untouched).

    Args:
        model: a geo3d model (any ``nn.Module`` for ``magnitude``).
        config: a :class:`PruneConfig`.
        example: ``magnitude``: unused (default None) unless ``finetune_steps``.
            ``structured``: one input the result is checked on (it must run). ``ltp``
            and fine-tuning: the training data: one ``Data``/``Batch`` or an iterable of
            them (cycled); the model needs ``loss(outputs, batch)``.

    Returns:
        The pruned model (same mode as ``model``).

    Raises:
        InvalidInputError: bad config/arguments, or a structured pruning of a model whose
            channel dependencies are unknown (the message lists the supported ones).
    """
    _check_model(model)
    if not isinstance(config, PruneConfig):
        raise InvalidInputError(f"config must be a PruneConfig, got {type(config).__name__}")
    if config.method in ("magnitude", "ltp"):
        if config.method == "ltp" or config.finetune_steps:
            _check_trainable(model, example, config.method)
        out = _magnitude(model, config) if config.method == "magnitude" else _ltp(model, config, example)
        return _finetune_masked(out, config, example) if config.finetune_steps else out
    out = _structured(model, config)
    if example is not None:
        was = out.training
        out.eval()
        with torch.no_grad():
            out(example)
        out.train(was)
    return out


# --------------------------------------------------------------------------- magnitude


def _magnitude(model: nn.Module, config: PruneConfig) -> nn.Module:
    out = copy.deepcopy(model)
    targets = [(m, "weight") for _, m in prunable_weights(out)]
    if not targets or config.amount == 0:
        return out
    if config.scope == "global":
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured,
                                        amount=float(config.amount))
    else:
        for m, name in targets:
            torch_prune.l1_unstructured(m, name, amount=float(config.amount))
    for m, name in targets:
        torch_prune.remove(m, name)
    return out


# --------------------------------------------------------------------------- LTP


class _SoftThreshold(nn.Module):
    """``w * sigmoid((w^2 - tau) / T)`` (LTP's differentiable soft pruning).

    ``tau = scale * t`` and ``T = scale * temperature`` with ``scale = mean(w^2)`` of the
    initial weight: the learned ``t`` (init 0) is in the layer's own units.
    """

    def __init__(self, weight: Tensor, temperature: float) -> None:
        super().__init__()
        self.scale = float(weight.detach().pow(2).mean().clamp_min(1e-12))
        self.temperature = temperature
        self.t = nn.Parameter(torch.tensor(0.0, dtype=weight.dtype, device=weight.device))

    @property
    def tau(self) -> Tensor:
        return self.t * self.scale

    def mask(self, w: Tensor) -> Tensor:
        return torch.sigmoid((w * w / self.scale - self.t) / self.temperature)

    def forward(self, w: Tensor) -> Tensor:
        return w * self.mask(w)


def _check_trainable(model: nn.Module, example: Any, method: str) -> None:
    if not callable(getattr(model, "loss", None)):
        raise InvalidInputError(f"method={method!r} with training needs a model with "
                                f"loss(outputs, batch)")
    cycle_batches(example, "example")  # raises on missing or empty data


def _finetune_masked(model: nn.Module, config: PruneConfig, example: Any) -> nn.Module:
    """Train ``model``'s surviving weights for ``finetune_steps``, zeros held at zero."""
    data = cycle_batches(example, "example")
    modules = [m for _, m in prunable_weights(model)]
    for m in modules:
        parametrize.register_parametrization(m, "weight", _FixedMask(m.weight != 0))
    was = model.training
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _, batch in zip(range(config.finetune_steps), data):
        opt.zero_grad()
        model.loss(model(batch), batch).backward()
        opt.step()
    with torch.no_grad():
        for m in modules:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    model.train(was)
    return model


class _FixedMask(nn.Module):
    """``w * mask`` with a fixed 0/1 mask (pruned weights stay zero while training)."""

    def __init__(self, keep: Tensor) -> None:
        super().__init__()
        self.register_buffer("keep", keep.detach().to(torch.bool))

    def forward(self, w: Tensor) -> Tensor:
        return w * self.keep


def _ltp(model: nn.Module, config: PruneConfig, example: Any) -> nn.Module:
    data = cycle_batches(example, "example")
    out = copy.deepcopy(model)
    was = out.training
    modules = [m for _, m in prunable_weights(out)]
    soft = []
    for m in modules:
        p = _SoftThreshold(m.weight, config.temperature)
        parametrize.register_parametrization(m, "weight", p)
        soft.append(p)
    taus = [p.t for p in soft]
    weights = [p for n, p in out.named_parameters() if not n.endswith(".t")]
    opt = torch.optim.Adam([{"params": weights, "lr": config.lr},
                            {"params": taus, "lr": config.threshold_lr}])
    total = sum(m.parametrizations.weight.original.numel() for m in modules)
    out.train()
    for _, batch in zip(range(config.steps), data):
        opt.zero_grad()
        task = out.loss(out(batch), batch)
        kept = sum(p.mask(m.parametrizations.weight.original).sum() for p, m in zip(soft, modules))
        (task + config.l0_weight * kept / max(1, total)).backward()
        opt.step()
    with torch.no_grad():
        for p, m in zip(soft, modules):
            w = m.parametrizations.weight.original
            keep = (w * w > p.tau).to(w.dtype)
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            m.weight.mul_(keep)
    out.train(was)
    return out


# --------------------------------------------------------------------------- structured


@dataclasses.dataclass
class _Group:
    """Channels produced by ``producer`` (rows), normalised by ``norm``, read by consumers."""

    producer: nn.Linear
    norm: Optional[nn.BatchNorm1d]
    consumers: List[Tuple[nn.Linear, int]]  # (linear, first column of the block)


def _chain(linears: Sequence[nn.Linear], norms: Sequence[Optional[nn.Module]],
           last_consumers: List[Tuple[nn.Linear, int]]) -> List[_Group]:
    groups = []
    for j, lin in enumerate(linears):
        consumers = [(linears[j + 1], 0)] if j + 1 < len(linears) else last_consumers
        groups.append(_Group(lin, norms[j] if j < len(norms) else None, consumers))
    return groups


def _linears_norms(seq: nn.Module) -> Tuple[List[nn.Linear], List[Optional[nn.Module]]]:
    """Linears of a sequential MLP and the BatchNorm following each (or None)."""
    mods = list(seq)
    lins, norms = [], []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            lins.append(m)
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            norms.append(nxt if isinstance(nxt, nn.BatchNorm1d) else None)
    return lins, norms


def _head_groups(head: nn.Module) -> List[_Group]:
    lins, norms = _linears_norms(head.mlp)
    return _chain(lins[:-1], norms[:-1], [(lins[-1], 0)]) if len(lins) > 1 else []


def _dgcnn_groups(model: nn.Module) -> List[_Group]:
    from geo3d.models.heads import SegmentationHead

    b, head = model.backbone, model.head
    head_first = _linears_norms(head.mlp)[0][0]
    groups, offset = [], 0
    for i, conv in enumerate(b.convs):
        lins, norms = _linears_norms(conv.post)
        lins, norms = [conv.first] + lins, [conv.post[0]] + norms
        width = lins[-1].out_features
        last: List[Tuple[nn.Linear, int]] = [(b.emb[0], offset)]
        if i + 1 < len(b.convs):
            last += [(b.convs[i + 1].first, 0), (b.convs[i + 1].first, width)]
        if b.concat_local:
            last.append((head_first, offset))
        groups += _chain(lins, norms, last)
        offset += width
    emb = b.emb[0].out_features
    if isinstance(head, SegmentationHead):
        emb_consumers = [(head_first, b.local_channels if b.concat_local else 0)]
    elif head.pool == "max_mean":
        emb_consumers = [(head_first, 0), (head_first, emb)]
    else:
        emb_consumers = [(head_first, 0)]
    groups.append(_Group(b.emb[0], b.emb[1], emb_consumers))
    return groups + _head_groups(head)


def _dgcnn_fix(model: nn.Module) -> None:
    b = model.backbone
    widths = [_linears_norms(conv.post)[0][-1].out_features if _linears_norms(conv.post)[0]
              else conv.first.out_features for conv in b.convs]
    for i in range(1, len(b.convs)):
        b.convs[i].in_channels = widths[i - 1]
    b.local_channels = sum(widths)
    emb = b.emb[0].out_features
    b.out_channels = emb + (b.local_channels if b.concat_local else 0)
    if getattr(model.head, "context_channels", 0):
        model.head.context_channels = emb


def _pointnet2_groups(model: nn.Module) -> List[_Group]:
    b, head = model.backbone, model.head
    head_first = _linears_norms(head.mlp)[0][0]
    levels = len(b.sa)
    fp_first = [_linears_norms(fp.mlp)[0][0] for fp in b.fp]
    groups = []
    coarse_in = []  # coarse block width of each propagation step, original layout
    sa_out = []
    for sa in b.sa:
        lins, _ = _linears_norms(sa.conv.post)
        sa_out.append((lins or [sa.conv.first])[-1].out_features)
    c = sa_out[-1]
    for fp in b.fp:
        coarse_in.append(c)
        c = _linears_norms(fp.mlp)[0][-1].out_features
    for l, sa in enumerate(b.sa, start=1):
        lins, norms = _linears_norms(sa.conv.post)
        lins, norms = [sa.conv.first] + lins, [sa.conv.post[0]] + norms
        last: List[Tuple[nn.Linear, int]] = []
        if l < levels:
            last.append((b.sa[l].conv.first, 0))
            if b.fp:
                j = levels - 1 - l  # the propagation step whose skip is level l
                last.append((fp_first[j], coarse_in[j]))
        elif b.global_mlp is not None:
            last.append((_linears_norms(b.global_mlp)[0][0], 0))
        else:
            last.append((fp_first[0], 0))
        groups += _chain(lins, norms, last)
    if b.global_mlp is not None:
        lins, norms = _linears_norms(b.global_mlp)
        groups += _chain(lins, norms, [(head_first, 0)])
    for j, fp in enumerate(b.fp):
        lins, norms = _linears_norms(fp.mlp)
        nxt = [(fp_first[j + 1], 0)] if j + 1 < len(b.fp) else [(head_first, 0)]
        groups += _chain(lins, norms, nxt)
    return groups + _head_groups(head)


def _pointnet2_fix(model: nn.Module) -> None:
    b = model.backbone
    for l in range(1, len(b.sa)):
        lins, _ = _linears_norms(b.sa[l - 1].conv.post)
        b.sa[l].conv.in_channels = (lins or [b.sa[l - 1].conv.first])[-1].out_features


def _importance(g: _Group) -> Tensor:
    w = g.producer.weight.detach()
    score = w.norm(dim=1)
    if g.norm is not None:
        score = score * g.norm.weight.detach().abs() / torch.sqrt(g.norm.running_var + g.norm.eps)
    return score


@torch.no_grad()
def _apply_groups(groups: List[_Group], amount: float) -> None:
    keeps = []
    for g in groups:
        c = g.producer.out_features
        k = max(1, int(round(c * (1 - amount))))
        keep = torch.sort(torch.topk(_importance(g), k).indices).values
        keeps.append(keep)
    cols: Dict[int, Tuple[nn.Linear, Tensor]] = {}
    for g, keep in zip(groups, keeps):
        c = g.producer.out_features
        drop = torch.ones(c, dtype=torch.bool)
        drop[keep] = False
        for lin, off in g.consumers:
            entry = cols.setdefault(id(lin), (lin, torch.ones(lin.in_features, dtype=torch.bool)))
            entry[1][off:off + c] &= ~drop
    for g, keep in zip(groups, keeps):
        lin = g.producer
        lin.weight = nn.Parameter(lin.weight[keep].clone())
        if lin.bias is not None:
            lin.bias = nn.Parameter(lin.bias[keep].clone())
        lin.out_features = len(keep)
        if g.norm is not None:
            keep_norm_entries(g.norm, keep)
    for lin, mask in cols.values():
        lin.weight = nn.Parameter(lin.weight[:, mask].clone())
        lin.in_features = int(mask.sum())


def _structured(model: nn.Module, config: PruneConfig) -> nn.Module:
    from geo3d.models.backbones.dgcnn import DGCNN
    from geo3d.models.backbones.equivariant import EquivariantBackbone
    from geo3d.models.backbones.pointnet2 import PointNet2
    from geo3d.models.gem.resnet import GemResNet

    backbone = getattr(model, "backbone", None)
    head = getattr(model, "head", None)
    out = copy.deepcopy(model)
    if isinstance(backbone, EquivariantBackbone):
        prune_irreps_copies(out, config.amount)
        return out
    if isinstance(backbone, DGCNN) and hasattr(head, "mlp"):
        _apply_groups(_dgcnn_groups(out), config.amount)
        _dgcnn_fix(out)
        return out
    if isinstance(backbone, PointNet2) and hasattr(head, "mlp"):
        _apply_groups(_pointnet2_groups(out), config.amount)
        _pointnet2_fix(out)
        return out
    if isinstance(backbone, GemResNet):
        prune_gem_fields(out, config.amount)
        return out
    raise InvalidInputError(
        f"structured pruning does not know the channel dependencies of "
        f"{type(model).__name__} (backbone {type(backbone).__name__}); supported: DGCNN and "
        f"PointNet++ models (channels), the e3nn equivariant models (irreps multiplicities) "
        f"and GEM-CNN (rho-fields). Use method='magnitude' or 'ltp' for the others")
