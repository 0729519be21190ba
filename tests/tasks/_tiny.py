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


class MeanAbsError:
    """A TaskEvaluator: mean absolute error of a per-sample regression (lower is better)."""

    key_metric = "MAE"
    higher_is_better = False

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, outputs, batch) -> None:
        self.total += float((outputs - batch.target).abs().sum())
        self.count += int(batch.target.numel())

    def merge(self, other: "MeanAbsError") -> None:
        self.total, self.count = self.total + other.total, self.count + other.count

    def compute(self) -> dict:
        return {"MAE": self.total / self.count}


class TinyRegressor(nn.Module):
    """A custom task: regress the mean x of each cloud (uses make_evaluator)."""

    task = "centroid"

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, data):
        batch = data.batch if data.batch is not None else \
            torch.zeros(data.pos.shape[0], dtype=torch.long, device=data.pos.device)
        return self.lin(global_mean_pool(data.pos, batch)).squeeze(-1)

    def loss(self, outputs, data):
        return F.mse_loss(outputs, data.target)

    def make_evaluator(self) -> MeanAbsError:
        return MeanAbsError()


def regression_dataset(n: int = 12, points: int = 16, seed: int = 0) -> list:
    """Clouds with a random shift; the target is the mean x of the points."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        pos = torch.randn(points, 3, generator=g) + 2 * torch.randn(1, 3, generator=g)
        out.append(Data(pos=pos, target=pos[:, 0].mean().reshape(1)))
    return out
