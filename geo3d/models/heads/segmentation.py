"""Segmentation head: a per-point MLP to logits, optionally with the global feature.

Plain torch layers; the loss is ``torch.nn.functional.cross_entropy`` (optionally
class-weighted) plus, optionally, the Lovász-softmax loss (:mod:`geo3d.models.heads.losses`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from geo3d.models._layers import global_pool, mlp
from geo3d.models.heads.losses import check_class_weights, check_loss_weight, segmentation_loss

__all__ = ["SegmentationHead"]


class SegmentationHead(nn.Module):
    """Per-point logits from per-point features (plus a global context, as in DGCNN).

    With ``context_channels > 0`` the last ``context_channels`` feature columns are
    max-pooled per graph and broadcast back to every point, then concatenated with the
    first ``in_channels - context_channels`` columns (DGCNN segmentation, Wang et al. 2019).

    Args:
        in_channels: per-point feature width ``C``.
        num_classes: number of classes.
        hidden: hidden widths (default ``(256, 128)``).
        dropout: dropout after each hidden layer (default 0.5).
        context_channels: trailing columns used as the pooled global feature (default 0).
        class_weights: optional per-class weights of the cross-entropy (``num_classes``
            positive numbers, e.g. inverse square roots of class frequencies; default None:
            unweighted). A non-persistent buffer: state dicts do not depend on it.
        lovasz_weight: weight of the Lovász-softmax loss added to the cross-entropy
            (Berman et al., CVPR 2018; default 0: cross-entropy only). It optimises the IoU
            of each class directly, which helps rare classes.

    Shapes:
        ``features [N, C], batch [N] -> logits [N, num_classes]``.
    """

    task = "segmentation"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.5,
        context_channels: int = 0,
        class_weights: Optional[Sequence[float]] = None,
        lovasz_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.context_channels = context_channels
        self.lovasz_weight = check_loss_weight(lovasz_weight, "lovasz_weight")
        self.register_buffer("class_weights", check_class_weights(class_weights, num_classes),
                             persistent=False)
        self.mlp = mlp([in_channels, *hidden, num_classes], dropout=dropout, plain_last=True)

    def forward(self, features: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        c = self.context_channels
        if c:
            local, emb = features[:, :-c], features[:, -c:]
            glob = global_pool(emb, batch, num_graphs, "max")[batch]
            features = torch.cat([local, glob], dim=1)
        return self.mlp(features)

    def loss(self, logits: Tensor, data: object) -> Tensor:
        """Cross-entropy (weighted by ``class_weights``) against ``data.y`` ([N] long, -1
        ignored), plus ``lovasz_weight`` times the Lovász-softmax loss."""
        return segmentation_loss(logits, data, self.class_weights, self.lovasz_weight)
