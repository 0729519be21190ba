"""Tiny models and datasets that follow the geo3d model contract (tests only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import global_mean_pool


class TinySeg(nn.Module):
    """Per-point MLP on pos (with dropout, so the RNG matters)."""

    task = "segmentation"

    def __init__(self, num_classes: int = 3, hidden: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, num_classes))

    def forward(self, data):
        return self.net(data.pos)

    def loss(self, logits, data):
        return F.cross_entropy(logits, data.y, ignore_index=-1)


class TinyCls(nn.Module):
    """Mean-pooled Linear on pos."""

    task = "classification"

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.lin = nn.Linear(3, num_classes)

    def forward(self, data):
        batch = data.batch if data.batch is not None else \
            torch.zeros(data.pos.shape[0], dtype=torch.long, device=data.pos.device)
        return self.lin(global_mean_pool(data.pos, batch))

    def loss(self, logits, data):
        return F.cross_entropy(logits, data.y, ignore_index=-1)


def seg_dataset(n: int = 12, points: int = 32, seed: int = 0) -> list:
    """Points labelled by the sign pattern of x and y (3 classes), a few ignored (-1)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        pos = torch.randn(points, 3, generator=g)
        y = (pos[:, 0] > 0).long() + (pos[:, 1] > 0.5).long()
        y[:2] = -1
        out.append(Data(pos=pos, y=y))
    return out


def cls_dataset(n: int = 12, points: int = 16, seed: int = 0) -> list:
    """Clouds shifted along +x (class 1) or -x (class 0)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        label = i % 2
        pos = torch.randn(points, 3, generator=g) + torch.tensor([2.0 * label - 1, 0, 0])
        out.append(Data(pos=pos, y=torch.tensor([label])))
    return out
