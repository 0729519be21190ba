"""Synthetic LiDAR frames: geo3d's embedded default data (offline, deterministic).

Each item is one frame of a freshly generated street scene from :mod:`geo3d.sim` (Open3D
ray casting of procedural trimesh assets), seeded by ``numpy.random.SeedSequence([seed,
split_code, kind, index])``: items are independent of access order and worker count, and
the splits never share a scene. See :mod:`geo3d.sim.sequence` for the ``Data`` attributes.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from torch.utils.data import Dataset
from torch_geometric.data import Data

from geo3d.datasets._common import _SPLIT_CODES, _resolve_index, _seed_sequence
from geo3d.errors import InvalidInputError
from geo3d.sim.sequence import SimConfig, simulate_frame

__all__ = ["SyntheticLidar"]


def _check_args(split: object, size: object, seed: object, config: object,
                cache: object) -> SimConfig:
    """Validate the arguments shared by the synthetic datasets; return the config."""
    if split not in _SPLIT_CODES:
        raise InvalidInputError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    for name, value, low in (("size", size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(cache, bool):
        raise InvalidInputError(f"cache must be a bool, got {cache!r}")
    config = SimConfig() if config is None else config
    if not isinstance(config, SimConfig):
        raise InvalidInputError(f"config must be a SimConfig or None, got "
                                f"{type(config).__name__}")
    return config


class SyntheticLidar(Dataset):
    """Single simulated 64-beam LiDAR frames of random street scenes.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint scenes).
        size: number of frames (>= 1).
        seed: base seed (default 0).
        config: simulation settings (default ``SimConfig()``).
        cache: keep generated frames in memory (default False); items are returned as
            copies, so a caller cannot change the cache.

    Shapes:
        ``dataset[i]`` is a ``Data`` with ``pos`` [N, 3], ``x`` [N, 1] intensity, ``y`` [N],
        ``instance`` [N], ``boxes`` [K, 7], ``box_labels`` [K], ``track_id`` [K],
        ``frame`` (0) and ``ego_pose`` [1, 4, 4].
    """

    _KIND = 0

    def __init__(self, split: str, size: int, seed: int = 0,
                 config: Optional[SimConfig] = None, cache: bool = False) -> None:
        self.config = _check_args(split, size, seed, config, cache)
        self.split, self.size, self.seed, self.cache = split, int(size), int(seed), cache
        self._cache: dict[int, object] = {}

    def __len__(self) -> int:
        return self.size

    def _generate(self, index: int) -> Data:
        return simulate_frame(_seed_sequence(self.seed, self.split, self._KIND, index),
                              self.config)

    def __getitem__(self, index: int):
        i = _resolve_index(index, self.size)
        if not self.cache:
            return self._generate(i)
        if i not in self._cache:
            self._cache[i] = self._generate(i)
        return _copy(self._cache[i])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, size={self.size}, "
                f"seed={self.seed})")


def _copy(item):
    return [d.clone() for d in item] if isinstance(item, list) else item.clone()
