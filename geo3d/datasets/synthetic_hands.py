"""Synthetic depth frames of articulated hands with 21 ground-truth joints (offline,
deterministic).

Each item is one frame rendered by :func:`geo3d.sim.hand_render.render_hand` (Open3D ray
casting of a capsule-skinned hand, forearm, table and clutter), seeded by
``numpy.random.SeedSequence([seed, split_code, kind, index])``: independent of access
order, and the splits never share a frame.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch_geometric.data import Data

from geo3d.datasets._common import CachedItems, _seed_sequence, check_bool, check_choice, check_int
from geo3d.errors import InvalidInputError
from geo3d.sim.hand import bone_lengths
from geo3d.sim.hand_render import HandSceneConfig, render_hand

__all__ = ["SyntheticHands"]


class SyntheticHands(CachedItems):
    """Full depth frames of a hand over a cluttered table, joints in camera coordinates.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint frames).
        size: number of frames (>= 1).
        seed: base seed (default 0).
        config: scene and camera settings (default ``HandSceneConfig()``: 320x240).
        cache: keep rendered frames in memory (default False; copies are handed out).
        with_depth: also return the depth image (default True).

    Shapes:
        ``dataset[i]`` is a ``Data`` with ``pos`` [N, 3] (every valid pixel back-projected,
        camera frame x right, y down, z forward, metres, row-major pixel order), ``y`` [N]
        long (1 hand, 0 not), ``label`` [N] long (index into
        :data:`geo3d.sim.hand_render.HAND_LABELS`), ``joints`` [21, 3] float32 (camera
        frame, order of :data:`geo3d.sim.hand.JOINTS`), ``bone_lengths`` [1, 20],
        ``intrinsics`` [1, 3, 3], ``hand_scale`` [1] and, with ``with_depth``, ``depth``
        [1, H, W] (z in metres, 0 invalid).
    """

    _KIND = 6

    def __init__(self, split: str, size: int, seed: int = 0,
                 config: Optional[HandSceneConfig] = None, cache: bool = False,
                 with_depth: bool = True) -> None:
        super().__init__(check_bool("cache", cache))
        self.split = check_choice("split", split, ("train", "val", "test"))
        self.size = check_int("size", size, 1)
        self.seed = check_int("seed", seed, 0)
        self.with_depth = check_bool("with_depth", with_depth)
        self.config = HandSceneConfig() if config is None else config
        if not isinstance(self.config, HandSceneConfig):
            raise InvalidInputError(f"config must be a HandSceneConfig or None, got "
                                    f"{type(self.config).__name__}")

    def __len__(self) -> int:
        return self.size

    def _load(self, index: int) -> Data:
        hand = render_hand(_seed_sequence(self.seed, self.split, self._KIND, index), self.config)
        fr = hand.frame
        data = Data(
            pos=torch.from_numpy(fr.points.copy()),
            y=torch.from_numpy((fr.point_label == 1).astype("int64")),
            label=torch.from_numpy(fr.point_label.copy()),
            joints=torch.from_numpy(hand.joints.copy()),
            bone_lengths=torch.from_numpy(bone_lengths(hand.joints)).float()[None],
            intrinsics=torch.tensor(self.config.camera.intrinsics, dtype=torch.float32)[None],
            hand_scale=torch.tensor([hand.shape.scale], dtype=torch.float32))
        if self.with_depth:
            data.depth = torch.from_numpy(fr.depth.copy())[None]
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, size={self.size}, seed={self.seed})"
