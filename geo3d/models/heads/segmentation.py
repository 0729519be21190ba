"""Segmentation head: a per-point MLP to logits, optionally with the global feature.

Plain torch layers; the loss is ``torch.nn.functional.cross_entropy``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from geo3d.models._layers import global_pool, mlp
from geo3d.models.heads.classification import cross_entropy

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
    ) -> None:
        super().__init__()
        self.context_channels = context_channels
        self.mlp = mlp([in_channels, *hidden, num_classes], dropout=dropout, plain_last=True)

    def forward(self, features: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        c = self.context_channels
        if c:
            local, emb = features[:, :-c], features[:, -c:]
            glob = global_pool(emb, batch, num_graphs, "max")[batch]
            features = torch.cat([local, glob], dim=1)
        return self.mlp(features)

    def loss(self, logits: Tensor, data: object) -> Tensor:
        """Cross-entropy against ``data.y`` ([N] long, -1 ignored)."""
        return cross_entropy(logits, getattr(data, "y", None))
