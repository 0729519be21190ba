"""Slimmable DGCNN / PointNet++: one set of weights, a runtime width budget ``b``.

Our own code on ``torch.nn.utils.parametrize`` (no library slims message-passing MLPs).
:func:`make_slimmable` deep-copies a :class:`~geo3d.models.heads.PointCloudModel` with a
DGCNN or PointNet++ backbone; every ``nn.Linear`` weight gets a parametrization that
returns the active block of the full weight: the first ``ceil(b * C)`` output rows and,
for inputs, the active columns of each block of the layer's input layout (the first
``ceil(b * C_i)`` of each concatenated part: EdgeConv's ``[x_i | x_j - x_i]``, PointNet's
``[x_j | pos_j - pos_i]``, DGCNN's concatenated layer outputs, PointNet++'s
``[interpolated | skip]``, the pooled ``[max | mean]``). Because the original forward code
only reads ``.weight``, the backbones run unchanged. The model's input width and the
number of classes are never slimmed. Every ``BatchNorm1d`` becomes a
:class:`SwitchableBatchNorm1d`: shared affine parameters (sliced), private running
statistics per training budget (Yu et al., "Slimmable Neural Networks", ICLR 2019).

Training (Yu & Huang, "Universally Slimmable Networks and Improved Training Techniques",
ICCV 2019): the *sandwich rule* and *in-place distillation* live in
:meth:`SlimmableModel.loss`, so :func:`geo3d.tasks.train` trains a slimmable model
unchanged: in training mode the forward runs at the largest budget, and ``loss`` adds the
smallest budget and ``sandwich_samples`` random budgets in between, each distilled from
the detached largest-budget logits (or trained on the labels). Budgets between the
training grid use the running statistics of the nearest grid budget.

Width only: depth is not slimmed (dropping EdgeConvs or set-abstraction levels changes
what every later layer sees); width alone gives >= 3x fewer MACs at ``b = 0.25``.
"""

from __future__ import annotations

import copy
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from geo3d.errors import InvalidInputError
from geo3d.models.backbones.dgcnn import DGCNN
from geo3d.models.backbones.pointnet2 import PointNet2
from geo3d.models.heads import ClassificationHead, PointCloudModel, SegmentationHead

__all__ = ["SlimmableModel", "SwitchableBatchNorm1d", "make_slimmable", "active_width",
           "check_budgets"]

Segments = List[Tuple[int, int]]  # (start column, active width) per input block


def active_width(channels: int, budget: float) -> int:
    """``max(1, ceil(budget * channels))``, the number of channels kept at ``budget``."""
    return max(1, math.ceil(budget * channels - 1e-9))


def check_budgets(budgets: object, name: str = "budgets") -> Tuple[float, ...]:
    """A sorted tuple of distinct budgets in ``[0.25, 1]`` (validated)."""
    try:
        out = tuple(sorted({float(b) for b in budgets}))  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a sequence of numbers in [0.25, 1], "
                                f"got {budgets!r}") from None
    if not out or any(isinstance(b, bool) or not 0.25 <= b <= 1 for b in budgets):  # type: ignore
        raise InvalidInputError(f"{name} must be a non-empty sequence of numbers in [0.25, 1], "
                                f"got {budgets!r}")
    return out


class _ActiveBlock(nn.Module):
    """Parametrization: the active rows (and input-column blocks) of a weight or bias."""

    def __init__(self, rows: int, segments: Optional[Segments]) -> None:
        super().__init__()
        self.rows, self.segments = rows, segments

    def forward(self, w: Tensor) -> Tensor:
        w = w[: self.rows]
        if self.segments is None:  # a bias
            return w
        if len(self.segments) == 1 and self.segments[0][0] == 0:
            return w[:, : self.segments[0][1]]
        return torch.cat([w[:, s : s + n] for s, n in self.segments], dim=1)


class SwitchableBatchNorm1d(nn.Module):
    """BatchNorm over the first ``C' <= C`` channels, with running statistics per budget.

    Affine parameters are shared (sliced to ``C'``); ``running_mean``/``running_var`` are
    ``[G, C]``, one row per budget of the training grid. :attr:`slot` selects the row;
    ``slot = None`` (a budget off the grid) normalises with batch statistics in training
    without updating any row, and with the row :attr:`eval_slot` in eval mode.

    Shapes:
        ``[N, C'] -> [N, C']`` for any ``C' <= C``.
    """

    def __init__(self, bn: nn.BatchNorm1d, num_slots: int) -> None:
        super().__init__()
        if not bn.affine or not bn.track_running_stats:
            raise InvalidInputError("SwitchableBatchNorm1d needs an affine BatchNorm1d that "
                                    "tracks running statistics")
        self.eps, self.momentum = bn.eps, bn.momentum
        self.weight = nn.Parameter(bn.weight.detach().clone())
        self.bias = nn.Parameter(bn.bias.detach().clone())
        self.register_buffer("running_mean", bn.running_mean.detach().repeat(num_slots, 1))
        self.register_buffer("running_var", bn.running_var.detach().repeat(num_slots, 1))
        self.slot: Optional[int] = num_slots - 1
        self.eval_slot: int = num_slots - 1

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        slot = self.slot if self.slot is not None else (None if self.training else self.eval_slot)
        mean = None if slot is None else self.running_mean[slot, :c]
        var = None if slot is None else self.running_var[slot, :c]
        return F.batch_norm(x, mean, var, self.weight[:c], self.bias[:c],
                            self.training or slot is None, self.momentum or 0.0, self.eps)


class _Plan:
    """What ``set_budget`` changes: every Linear (its full output width, its input layout,
    whether its output width is kept: the logits) and the width attributes read by the
    forward code (EdgeConv / PointNetConv ``in_channels``, the head's ``context_channels``).

    A layout lists the input blocks in column order as ``(start column, full width)``; a
    negative width marks a block that never slims (coordinates, the model's own input
    features), a zero width a block that is absent.
    """

    def __init__(self) -> None:
        self.linears: List[Tuple[nn.Linear, int, List[Tuple[int, int]], bool]] = []
        # (module, attribute, block): attribute := active width of the input block
        self.widths: List[Tuple[nn.Module, str, Tuple[int, int]]] = []

    def chain(self, seq: nn.Module, layout: List[Tuple[int, int]], keep_last: bool = False
              ) -> List[Tuple[int, int]]:
        """Add the Linears of ``seq`` in order, the first reading ``layout``; returns the
        layout of the last one's output."""
        linears = [m for m in seq.modules() if isinstance(m, nn.Linear)]
        for i, lin in enumerate(linears):
            last = keep_last and i == len(linears) - 1
            self.linears.append((lin, lin.out_features, layout, last))
            layout = [(0, lin.out_features)]
        return layout


def _fixed(start: int, width: int) -> Tuple[int, int]:
    """An input block that never slims (coordinates, the model's own input features)."""
    return (start, -width)


def _segments(layout: Sequence[Tuple[int, int]], budget: float) -> Segments:
    return [(s, -w if w < 0 else active_width(w, budget)) for s, w in layout if w != 0]


def _plan_dgcnn(model: PointCloudModel, plan: _Plan) -> List[Tuple[int, int]]:
    bb: DGCNN = model.backbone
    width_in = 3 + bb.in_channels
    layout = [_fixed(0, width_in)]
    local, offset = [], 0
    for conv in bb.convs:
        full = conv.in_channels
        fixed = layout[0][1] < 0
        first_layout = [_fixed(0, full), _fixed(full, full)] if fixed else [(0, full), (full, full)]
        plan.linears.append((conv.first, conv.first.out_features, first_layout, False))
        plan.widths.append((conv, "in_channels", (0, -full if fixed else full)))
        layout = plan.chain(conv.post, [(0, conv.first.out_features)])
        local.append((offset, layout[0][1]))
        offset += layout[0][1]
    emb = plan.chain(bb.emb, local)
    return local + [(bb.local_channels, emb[0][1])] if bb.concat_local else emb


def _plan_pointnet2(model: PointCloudModel, plan: _Plan) -> List[Tuple[int, int]]:
    bb: PointNet2 = model.backbone
    levels = [[_fixed(0, bb.in_channels)]]
    for sa in bb.sa:
        conv = sa.conv
        full = conv.in_channels
        x_block = levels[-1][0] if full else (0, 0)
        plan.linears.append((conv.first, conv.first.out_features, [x_block, _fixed(full, 3)], False))
        plan.widths.append((conv, "in_channels", x_block))
        levels.append(plan.chain(conv.post, [(0, conv.first.out_features)]))
    if bb.global_mlp is not None:
        full = levels[-1][0][1]
        return plan.chain(bb.global_mlp, [levels[-1][0], _fixed(full, 3)])
    coarse = levels[-1][0]
    for fp, skip in zip(bb.fp, reversed(levels[:-1])):
        coarse = plan.chain(fp.mlp, [coarse, (coarse[1], skip[0][1])])[0]
    return [coarse]


def _plan_head(model: PointCloudModel, plan: _Plan, feats: List[Tuple[int, int]]) -> None:
    head = model.head
    if isinstance(head, SegmentationHead):
        if head.context_channels:
            plan.widths.append((head, "context_channels", feats[-1]))
        plan.chain(head.mlp, feats, keep_last=True)
    else:
        (start, full), = feats
        layout = [(0, full), (full, full)] if head.pool == "max_mean" else [(0, full)]
        plan.chain(head.mlp, layout, keep_last=True)


def _check_slimmable(model: object) -> None:
    if not isinstance(model, PointCloudModel) or not isinstance(model.backbone, (DGCNN, PointNet2)) \
            or not isinstance(model.head, (SegmentationHead, ClassificationHead)):
        backbone = type(getattr(model, "backbone", model)).__name__
        raise InvalidInputError(
            f"model must be a DGCNN or PointNet++ PointCloudModel (dgcnn_cls/seg, "
            f"pointnet2_cls/seg) to be made slimmable, got {type(model).__name__} with "
            f"{backbone}; equivariant and GEM models have no slimmable MLP widths")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise InvalidInputError("model already has parametrized weights (pruned with LTP or "
                                "quantized with LSQ+?); make the float model slimmable first")
    if any(isinstance(m, SwitchableBatchNorm1d) for m in model.modules()):
        raise InvalidInputError("model is already slimmable")


class SlimmableModel(nn.Module):
    """A slimmable copy of a DGCNN / PointNet++ model; see the module docstring.

    Build it with :func:`make_slimmable` or
    ``conditional(model, ConditionalConfig(method="budget"))``.

    Args:
        net: the model to own (modified in place: pass a copy).
        budgets: training grid of budgets, each with its own BatchNorm statistics
            (default ``(0.25, 0.5, 0.75, 1.0)``); ``set_budget`` accepts any
            ``b`` in ``[min(budgets), max(budgets)]``.
        sandwich_samples: random budgets between the smallest and largest per training step
            (default 2).
        inplace_distillation: train the smaller budgets on the largest one's detached
            soft predictions (default True) rather than on the labels.
        temperature: distillation temperature (default 1).

    Attributes:
        task, in_channels: those of the wrapped model.
        budget: the current budget (default the largest).

    Shapes:
        those of the wrapped model.
    """

    def __init__(self, net: PointCloudModel, budgets: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
                 sandwich_samples: int = 2, inplace_distillation: bool = True,
                 temperature: float = 1.0) -> None:
        super().__init__()
        _check_slimmable(net)
        self.budgets = check_budgets(budgets)
        self.sandwich_samples = sandwich_samples
        self.inplace_distillation = inplace_distillation
        self.temperature = temperature
        self.task: str = net.task
        self.in_channels: int = net.in_channels
        plan = _Plan()
        feats = (_plan_dgcnn if isinstance(net.backbone, DGCNN) else _plan_pointnet2)(net, plan)
        _plan_head(net, plan, feats)
        self._plan = plan
        for lin, _, _, _ in plan.linears:
            parametrize.register_parametrization(lin, "weight", _ActiveBlock(lin.out_features, []),
                                                 unsafe=True)
            if lin.bias is not None:
                parametrize.register_parametrization(lin, "bias", _ActiveBlock(lin.out_features, None),
                                                     unsafe=True)
        _swap_batchnorms(net, len(self.budgets))
        self.net = net
        self.budget = self.budgets[-1]
        self._apply_budget(self.budget)

    # ------------------------------------------------------------------ budget
    def set_budget(self, budget: float) -> "SlimmableModel":
        """Run at ``budget`` from now on (no retraining); returns ``self``.

        Raises:
            InvalidInputError: ``budget`` outside ``[min(budgets), max(budgets)]``.
        """
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) \
                or not self.budgets[0] - 1e-9 <= budget <= self.budgets[-1] + 1e-9:
            raise InvalidInputError(f"budget must be a number in [{self.budgets[0]}, "
                                    f"{self.budgets[-1]}], got {budget!r}")
        self.budget = float(budget)
        self._apply_budget(self.budget)
        return self

    def _apply_budget(self, budget: float) -> None:
        for lin, out, layout, keep in self._plan.linears:
            rows = out if keep else active_width(out, budget)
            lin.parametrizations.weight[0].rows = rows
            lin.parametrizations.weight[0].segments = _segments(layout, budget)
            if lin.bias is not None:
                lin.parametrizations.bias[0].rows = rows
        for module, attr, block in self._plan.widths:
            setattr(module, attr, sum(n for _, n in _segments([block], budget)))
        slot = next((i for i, b in enumerate(self.budgets) if abs(b - budget) < 1e-9), None)
        nearest = min(range(len(self.budgets)), key=lambda i: abs(self.budgets[i] - budget))
        for m in self.net.modules():
            if isinstance(m, SwitchableBatchNorm1d):
                m.slot, m.eval_slot = slot, nearest

    def width_of(self, channels: int) -> int:
        """Channels kept out of ``channels`` at the current budget."""
        return active_width(channels, self.budget)

    # ------------------------------------------------------------------ model contract
    def forward(self, data: object) -> Tensor:
        if self.training and self.budget != self.budgets[-1]:
            self._apply_budget(self.budgets[-1])  # sandwich: the forward is the largest
            try:
                return self.net(data)
            finally:
                self._apply_budget(self.budget)
        return self.net(data)

    def loss(self, outputs: Tensor, data: object) -> Tensor:
        """The wrapped model's loss; in training mode plus the sandwich terms.

        ``outputs`` are the largest budget's (the training forward). The smallest budget
        and ``sandwich_samples`` uniform random budgets in between each add their loss:
        ``T^2 KL(softmax(teacher / T) || softmax(student / T))`` against the detached
        ``outputs`` (in-place distillation), or the task loss on the labels.
        """
        from geo3d.efficiency.distill import kd_loss

        loss = self.net.loss(outputs, data)
        if not self.training or len(self.budgets) == 1:
            return loss
        low, high = self.budgets[0], self.budgets[-1]
        others = [low] + [low + (high - low) * float(torch.rand(())) for _ in range(self.sandwich_samples)]
        teacher = outputs.detach()
        try:
            for b in others:
                self._apply_budget(b)
                out = self.net(data)
                loss = loss + (kd_loss(out, teacher, self.temperature) if self.inplace_distillation
                               else self.net.loss(out, data))
        finally:
            self._apply_budget(self.budget)
        return loss


def _swap_batchnorms(module: nn.Module, slots: int) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm1d):
            setattr(module, name, SwitchableBatchNorm1d(child, slots))
        else:
            _swap_batchnorms(child, slots)


def make_slimmable(model: nn.Module, budgets: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
                   sandwich_samples: int = 2, inplace_distillation: bool = True,
                   temperature: float = 1.0) -> SlimmableModel:
    """A :class:`SlimmableModel` made from a deep copy of ``model`` (left untouched).

    At budget 1 the copy computes exactly what ``model`` computes (until it is trained).

    Raises:
        InvalidInputError: ``model`` is not a DGCNN / PointNet++ ``PointCloudModel``, or
            already parametrized / slimmable; bad ``budgets``.
    """
    _check_slimmable(model)
    return SlimmableModel(copy.deepcopy(model), budgets, sandwich_samples, inplace_distillation,
                          temperature)
