"""Early exit for DGCNN / PointNet++ classifiers: intermediate heads, per-sample exits.

Our own code (BranchyNet-style: Teerapittayanon, McDanel & Kung, "BranchyNet: Fast
Inference via Early Exiting from Deep Neural Networks", ICPR 2016). After every EdgeConv
(DGCNN) or set-abstraction level (PointNet++) an exit head (a
:class:`~geo3d.models.heads.ClassificationHead`: global pooling and a small MLP) predicts
the class. In eval mode a sample leaves at the first exit whose prediction is trusted
(max softmax probability ``>= threshold``, or entropy ``<= threshold``); its points are
then dropped from the batch, so the later layers, neighbour searches included, run only on
the samples still in. Every per-sample operation of these backbones (kNN, FPS, radius,
eval-mode BatchNorm, pooling) works per item, so a sample that does not exit gets exactly
the logits of the original model.

Segmentation models are refused: an exit decision per cloud would need a per-point head
and the global context at every stage, which is not natural for these backbones.
"""

from __future__ import annotations

import copy
from typing import List, Tuple

import torch
from torch import Tensor, nn

from geo3d.errors import InvalidInputError
from geo3d.models._layers import check_model_input, feature_knn_graph
from geo3d.models.backbones.dgcnn import DGCNN
from geo3d.models.backbones.pointnet2 import PointNet2
from geo3d.models.heads import ClassificationHead, PointCloudModel
from geo3d.models.heads.losses import cross_entropy

__all__ = ["EarlyExitModel", "make_early_exit", "trusted", "confidence", "entropy"]


def confidence(logits: Tensor) -> Tensor:
    """Max softmax probability per row: ``[R, C] -> [R]``."""
    return logits.softmax(dim=-1).amax(dim=-1)


def entropy(logits: Tensor) -> Tensor:
    """Entropy (nats) of the softmax per row: ``[R, C] -> [R]``."""
    logp = logits.log_softmax(dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def trusted(logits: Tensor, criterion: str, threshold: float) -> Tensor:
    """``[R]`` bool: confidence ``>= threshold`` or entropy ``<= threshold`` per row."""
    if criterion == "confidence":
        return confidence(logits) >= threshold
    if criterion == "entropy":
        return entropy(logits) <= threshold
    raise InvalidInputError(f"criterion must be 'confidence' or 'entropy', got {criterion!r}")


def _remap(keep: Tensor, batch: Tensor) -> Tuple[Tensor, Tensor]:
    """Point mask of the kept samples and their new, compact sample ids."""
    mask = keep[batch]
    new_id = torch.cumsum(keep.long(), 0) - 1
    return mask, new_id[batch[mask]]


class EarlyExitModel(nn.Module):
    """A DGCNN / PointNet++ classifier with an exit head after every stage.

    Args:
        net: the classifier (owned: pass a copy).
        criterion: ``"confidence"`` or ``"entropy"``.
        threshold: see :func:`trusted`.
        hidden: hidden width of the exit heads.
        freeze_backbone: only the exit heads train; ``net`` stays in eval mode.

    Attributes:
        exit_counts: ``[S + 1]`` long, samples that left at each exit (the last entry:
            the final head) since :meth:`reset_exit_stats`, counted in eval mode.

    Shapes:
        eval: ``data -> logits [num_graphs, num_classes]`` (each from the sample's exit);
        training: ``[S + 1, num_graphs, num_classes]``, every exit and the final head.
    """

    def __init__(self, net: PointCloudModel, criterion: str, threshold: float, hidden: int,
                 freeze_backbone: bool) -> None:
        super().__init__()
        self.net, self.criterion, self.threshold = net, criterion, float(threshold)
        self.freeze_backbone = freeze_backbone
        self.task: str = net.task
        self.in_channels: int = net.in_channels
        bb = net.backbone
        num_classes = net.head.mlp[-1].out_features
        convs = bb.convs if isinstance(bb, DGCNN) else [sa.conv for sa in bb.sa]
        widths = [_out_width(conv) for conv in convs]
        pool = "max_mean" if isinstance(bb, DGCNN) else "max"
        self.exits = nn.ModuleList(ClassificationHead(w, num_classes, (hidden,), 0.0, pool=pool)
                                   for w in widths)
        if freeze_backbone:
            for p in net.parameters():
                p.requires_grad_(False)
        self.register_buffer("exit_counts", torch.zeros(len(widths) + 1, dtype=torch.long),
                             persistent=False)
        self.train(net.training)

    def train(self, mode: bool = True) -> "EarlyExitModel":
        super().train(mode)
        if self.freeze_backbone:
            self.net.eval()
        return self

    def reset_exit_stats(self) -> None:
        self.exit_counts.zero_()

    def exit_rates(self) -> List[float]:
        """Fraction of the samples counted that left at each exit (last: the final head)."""
        total = int(self.exit_counts.sum())
        return [int(c) / total if total else 0.0 for c in self.exit_counts]

    def forward(self, data: object) -> Tensor:
        dtype = next(self.net.parameters()).dtype
        pos, x, batch, num_graphs = check_model_input(data, self.in_channels, dtype)
        bb, all_exits = self.net.backbone, self.training
        out = pos.new_zeros((num_graphs, self.net.head.mlp[-1].out_features))
        alive = torch.arange(num_graphs, device=pos.device)
        outputs: List[Tensor] = []
        state = _DGCNNState(bb, pos, x) if isinstance(bb, DGCNN) else _PointNet2State(pos, x)
        for level, head in enumerate(self.exits):
            h, batch = state.stage(bb, level, batch)
            logits = head(h, batch, alive.numel())
            if all_exits:
                outputs.append(logits)
                continue
            done = trusted(logits, self.criterion, self.threshold)
            out[alive[done]] = logits[done]
            self.exit_counts[level] += int(done.sum())
            if bool(done.all()):
                return out
            if bool(done.any()):
                mask, batch = _remap(~done, batch)
                state.keep(mask)
                alive = alive[~done]
        feats = state.final(bb, batch)
        logits = self.net.head(feats, batch, alive.numel())
        if all_exits:
            return torch.stack(outputs + [logits])
        out[alive] = logits
        self.exit_counts[-1] += alive.numel()
        return out

    def loss(self, outputs: Tensor, data: object) -> Tensor:
        """Mean cross-entropy of the exits (and of the final head unless frozen); in eval
        mode, of the given logits."""
        y = getattr(data, "y", None)
        if outputs.dim() == 2:
            return cross_entropy(outputs, y)
        parts = outputs if not self.freeze_backbone else outputs[:-1]
        return torch.stack([cross_entropy(o, y) for o in parts]).mean()


def _out_width(conv: nn.Module) -> int:
    """Output width of an EdgeConv / PointNetConv (its last ``nn.Linear``)."""
    return [m for m in conv.modules() if isinstance(m, nn.Linear)][-1].out_features


class _DGCNNState:
    """DGCNN's forward, stage by stage (as ``DGCNN.forward``), with points removable."""

    def __init__(self, bb: DGCNN, pos: Tensor, x) -> None:
        self.h = pos if x is None else torch.cat([pos, x], dim=1)
        self.space, self.outs = pos, []

    def stage(self, bb: DGCNN, level: int, batch: Tensor) -> Tuple[Tensor, Tensor]:
        edge_index = feature_knn_graph(self.space, bb.k, batch)
        regular = edge_index.shape[1] == self.h.shape[0] * bb.k
        self.h = bb.convs[level](self.h, edge_index, k=bb.k if regular else None)
        self.outs.append(self.h)
        self.space = self.h
        return self.h, batch

    def keep(self, mask: Tensor) -> None:
        self.h, self.space = self.h[mask], self.space[mask]
        self.outs = [o[mask] for o in self.outs]

    def final(self, bb: DGCNN, batch: Tensor) -> Tensor:
        return bb.emb(torch.cat(self.outs, dim=1))


class _PointNet2State:
    """PointNet++'s classification forward, level by level, with points removable."""

    def __init__(self, pos: Tensor, x) -> None:
        self.x, self.pos = x, pos

    def stage(self, bb: PointNet2, level: int, batch: Tensor) -> Tuple[Tensor, Tensor]:
        self.x, self.pos, batch = bb.sa[level](self.x, self.pos, batch)
        return self.x, batch

    def keep(self, mask: Tensor) -> None:
        self.x, self.pos = self.x[mask], self.pos[mask]

    def final(self, bb: PointNet2, batch: Tensor) -> Tensor:
        return bb.global_mlp(torch.cat([self.x, self.pos], dim=1))


def make_early_exit(model: nn.Module, criterion: str = "confidence", threshold: float = 0.9,
                    hidden: int = 64, freeze_backbone: bool = True) -> EarlyExitModel:
    """An :class:`EarlyExitModel` from a deep copy of ``model`` (left untouched).

    The exit heads start untrained: train them with :func:`geo3d.tasks.train` (with
    ``freeze_backbone`` only they learn, and the final head's logits stay the input
    model's).

    Raises:
        InvalidInputError: ``model`` is not a DGCNN / PointNet++ classifier.
    """
    ok = isinstance(model, PointCloudModel) and isinstance(model.head, ClassificationHead) and (
        isinstance(model.backbone, DGCNN) and not model.backbone.concat_local
        or isinstance(model.backbone, PointNet2) and model.backbone.global_mlp is not None)
    if not ok:
        raise InvalidInputError(
            f"early exit needs a DGCNN or PointNet++ classifier (dgcnn_cls, pointnet2_cls), got "
            f"{type(model).__name__} with {type(getattr(model, 'backbone', model)).__name__} / "
            f"{type(getattr(model, 'head', model)).__name__}; segmentation, equivariant and GEM "
            f"models have no per-stage exits")
    return EarlyExitModel(copy.deepcopy(model), criterion, threshold, hidden, freeze_backbone)
