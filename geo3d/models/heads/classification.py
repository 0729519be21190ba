"""Classification head: global pooling of per-point features, then an MLP to logits.

Pooling is PyG's ``global_max_pool`` (+ ``global_mean_pool``); the loss is
``torch.nn.functional.cross_entropy``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geo3d.errors import InvalidInputError
from geo3d.models._layers import global_pool, mlp

__all__ = ["ClassificationHead"]


class ClassificationHead(nn.Module):
    """Pool per-point features per graph and map them to class logits.

    DGCNN pools max and mean (Wang et al., "Dynamic Graph CNN for Learning on Point
    Clouds", TOG 2019); PointNet/PointNet++ pool max (Qi et al. 2017).

    Args:
        in_channels: per-point feature width ``C``.
        num_classes: number of classes.
        hidden: widths of the hidden layers (default ``(512, 256)``).
        dropout: dropout after each hidden layer (default 0.5).
        pool: ``"max"`` or ``"max_mean"`` (default).

    Shapes:
        ``features [M, C], batch [M] -> logits [num_graphs, num_classes]``.
    """

    task = "classification"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.5,
        pool: str = "max_mean",
    ) -> None:
        super().__init__()
        if pool not in ("max", "max_mean"):
            raise InvalidInputError(f"pool must be 'max' or 'max_mean', got {pool!r}")
        self.pool = pool
        width = in_channels * (2 if pool == "max_mean" else 1)
        # no BatchNorm here (as PyG's examples): a batch of one cloud must train too
        self.mlp = mlp([width, *hidden, num_classes], norm=False, dropout=dropout, plain_last=True)

    def forward(self, features: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        return self.mlp(global_pool(features, batch, num_graphs, self.pool))

    def loss(self, logits: Tensor, data: object) -> Tensor:
        """Cross-entropy against ``data.y`` ([num_graphs] long, -1 ignored)."""
        return cross_entropy(logits, getattr(data, "y", None))


def cross_entropy(logits: Tensor, y: object) -> Tensor:
    """Mean cross-entropy over labels ``!= -1``; 0 (with a graph) when all are ignored."""
    if not isinstance(y, Tensor):
        raise InvalidInputError(f"data.y must be a tensor of class indices, got {type(y).__name__}")
    y = y.reshape(-1) if y.dim() == 2 and y.shape[1] == 1 else y
    if y.dim() != 1 or y.shape[0] != logits.shape[0]:
        raise InvalidInputError(
            f"data.y must have shape [{logits.shape[0]}] (one label per logits row), got {list(y.shape)}"
        )
    if y.is_floating_point() or y.dtype == torch.bool:
        raise InvalidInputError(f"data.y must be an integer tensor, got {y.dtype}")
    y = y.long()
    if y.numel() and (int(y.min()) < -1 or int(y.max()) >= logits.shape[1]):
        raise InvalidInputError(
            f"data.y must hold class indices in [0, {logits.shape[1]}) or -1, "
            f"got range [{int(y.min())}, {int(y.max())}]"
        )
    if not bool((y >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, y, ignore_index=-1)
