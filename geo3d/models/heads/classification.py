"""Classification head: global pooling of per-point features, then an MLP to logits.

Pooling is PyG's ``global_max_pool`` (+ ``global_mean_pool``); the loss is
``torch.nn.functional.cross_entropy``, optionally class-weighted
(:mod:`geo3d.models.heads.losses`).
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from geo3d.errors import InvalidInputError
from geo3d.models._layers import global_pool, mlp
from geo3d.models.heads.losses import check_class_weights, cross_entropy

__all__ = ["ClassificationHead", "cross_entropy"]


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
        class_weights: optional per-class weights of the cross-entropy (``num_classes``
            positive numbers; default None: unweighted). Kept as a non-persistent buffer,
            so state dicts do not depend on it.

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
        class_weights: Optional[Sequence[float]] = None,
    ) -> None:
        super().__init__()
        if pool not in ("max", "max_mean"):
            raise InvalidInputError(f"pool must be 'max' or 'max_mean', got {pool!r}")
        self.pool = pool
        width = in_channels * (2 if pool == "max_mean" else 1)
        # no BatchNorm here (as PyG's examples): a batch of one cloud must train too
        self.mlp = mlp([width, *hidden, num_classes], norm=False, dropout=dropout, plain_last=True)
        self.register_buffer("class_weights", check_class_weights(class_weights, num_classes),
                             persistent=False)

    def forward(self, features: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        return self.mlp(global_pool(features, batch, num_graphs, self.pool))

    def loss(self, logits: Tensor, data: object) -> Tensor:
        """(Class-weighted) cross-entropy against ``data.y`` ([num_graphs] long, -1 ignored)."""
        return cross_entropy(logits, getattr(data, "y", None), self.class_weights)

