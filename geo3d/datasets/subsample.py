"""A dataset view that keeps a few attributes and a fixed random subset of each item's points.

Plain torch indexing; the subset of item ``i`` is seeded by ``(seed, i)``, so it is the same
in every epoch, process and worker.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError

__all__ = ["SubsampledPoints"]


class SubsampledPoints(Dataset):
    """Items of ``dataset`` cut to ``keys`` and at most ``num_points`` points.

    Args:
        dataset: any sequence of ``Data`` (a torch Dataset or a list).
        num_points: points kept per item, drawn without replacement; None keeps all
            (default). Items with fewer points are returned whole.
        seed: base seed of the subsets (default 0).
        keys: attributes kept (default ``("pos", "x", "y")``); per-point ones (first
            dimension N) are subsampled, the others (e.g. a class label ``y`` [1]) kept.
        transform: applied to each cut item last (e.g.
            :func:`geo3d.datasets.features.lidar_features`); default None.

    Shapes:
        ``self[i].pos``: ``[min(N_i, num_points), 3]``, rows in their original order.
    """

    def __init__(self, dataset, num_points: Optional[int] = None, seed: int = 0,
                 keys: Sequence[str] = ("pos", "x", "y"),
                 transform: Optional[Callable[[Data], Data]] = None) -> None:
        if num_points is not None and (isinstance(num_points, bool) or not isinstance(num_points, int)
                                       or num_points < 1):
            raise InvalidInputError(f"num_points must be an integer >= 1 or None, got {num_points!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r}")
        if not keys or not all(isinstance(k, str) for k in keys):
            raise InvalidInputError(f"keys must be a non-empty sequence of names, got {keys!r}")
        if transform is not None and not callable(transform):
            raise InvalidInputError(f"transform must be callable or None, got {transform!r}")
        self.dataset, self.num_points, self.seed, self.keys = dataset, num_points, seed, tuple(keys)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Data:
        item = self.dataset[index]
        keep = {k: item[k] for k in self.keys if k in item and item[k] is not None}
        n = item.pos.shape[0]
        if self.num_points is not None and n > self.num_points:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
            idx = torch.randperm(n, generator=g)[: self.num_points].sort().values
            keep = {k: v[idx] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v
                    for k, v in keep.items()}
        out = Data(**keep)
        return out if self.transform is None else self.transform(out)
