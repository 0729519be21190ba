"""Synthetic LiDAR sequences (10 Hz by default) with persistent track ids and ego poses.

Each item is the list of the first ``length`` frames of one simulated street scene
(:func:`geo3d.sim.simulate_sequence`), seeded like :class:`SyntheticLidar` but from a
separate stream, so sequences never repeat single-frame scenes.
"""

from __future__ import annotations

import itertools
from typing import Iterator, Optional

import numpy as np
from torch_geometric.data import Data

from geo3d.datasets._common import _resolve_index, _seed_sequence
from geo3d.datasets.synthetic_lidar import SyntheticLidar
from geo3d.errors import InvalidInputError
from geo3d.sim.sequence import SimConfig, iter_sequence, simulate_sequence

__all__ = ["SyntheticSequences"]


class SyntheticSequences(SyntheticLidar):
    """Simulated LiDAR sequences of random street scenes.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint scenes).
        size: number of sequences (>= 1).
        length: frames per sequence (>= 1).
        seed: base seed (default 0).
        config: simulation settings (default ``SimConfig()``; ``frame_period`` 0.1 s).
        cache: keep generated sequences in memory (default False).

    Shapes:
        ``dataset[i]`` is a list of ``length`` ``Data`` frames (attributes as in
        :class:`SyntheticLidar`) with ``frame`` = 0..length-1; a ``track_id`` names the
        same object in every frame of the sequence, and ``ego_pose`` [1, 4, 4] is the
        world-from-LiDAR pose of each frame in the sequence's world frame.
    """

    _KIND = 1

    def __init__(self, split: str, size: int, length: int, seed: int = 0,
                 config: Optional[SimConfig] = None, cache: bool = False) -> None:
        super().__init__(split, size, seed, config, cache)
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise InvalidInputError(f"length must be an integer >= 1, got {length!r}")
        self.length = length

    def _generate(self, index: int) -> list[Data]:
        return simulate_sequence(_seed_sequence(self.seed, self.split, self._KIND, index),
                                 self.length, self.config)

    def iter_frames(self, index: int) -> Iterator[Data]:
        """The frames of ``self[index]`` one at a time, simulated lazily (not cached)."""
        i = _resolve_index(index, self.size)
        stream = iter_sequence(_seed_sequence(self.seed, self.split, self._KIND, i), self.config)
        return itertools.islice(stream, self.length)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, size={self.size}, "
                f"length={self.length}, seed={self.seed})")
