"""SyntheticHands: deterministic full depth frames with joints in camera coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geo3d.datasets import SyntheticHands
from geo3d.errors import InvalidInputError
from geo3d.sim.depth_camera import DepthCamera
from geo3d.sim.hand import bone_lengths
from geo3d.sim.hand_render import HandSceneConfig

CFG = HandSceneConfig(camera=DepthCamera(width=96, height=72, fx=83.1, fy=83.1, max_depth=3.0))


def test_item_layout():
    ds = SyntheticHands("train", 3, config=CFG)
    d = ds[1]
    n = d.pos.shape[0]
    assert d.pos.dtype == torch.float32 and d.pos.shape == (n, 3) and n > 1000
    assert d.y.shape == (n,) and set(d.y.unique().tolist()) == {0, 1}
    assert d.joints.shape == (21, 3) and d.joints.dtype == torch.float32
    assert d.depth.shape == (1, 72, 96)
    torch.testing.assert_close(d.bone_lengths[0], torch.from_numpy(bone_lengths(d.joints.numpy())))
    # pos are the valid depth pixels back-projected: z equals the depth image
    z = d.depth[0][d.depth[0] > 0]
    torch.testing.assert_close(d.pos[:, 2].sort().values, z.sort().values)
    # every hand point projects into the image through the intrinsics
    k = d.intrinsics[0].double()
    uv = (d.pos.double() / d.pos[:, 2:].double()) @ k.T
    assert uv[:, 0].min() > -0.6 and uv[:, 0].max() < 95.6
    assert len(ds) == 3 and ds[-1].pos.shape == ds[2].pos.shape


def test_deterministic_per_split_seed_index():
    a = SyntheticHands("test", 4, seed=1, config=CFG)
    b = SyntheticHands("test", 2, seed=1, config=CFG)
    torch.testing.assert_close(a[1].joints, b[1].joints)
    assert not torch.equal(a[1].joints, a[0].joints)
    assert not torch.equal(SyntheticHands("val", 2, seed=1, config=CFG)[1].joints, a[1].joints)
    assert not torch.equal(SyntheticHands("test", 2, seed=2, config=CFG)[1].joints, a[1].joints)


def test_cache_hands_out_copies():
    ds = SyntheticHands("train", 1, config=CFG, cache=True, with_depth=False)
    first = ds[0]
    first.pos += 1.0
    assert not torch.equal(ds[0].pos, first.pos)
    assert "depth" not in ds[0]


def test_errors():
    with pytest.raises(InvalidInputError, match="split"):
        SyntheticHands("training", 2)
    with pytest.raises(InvalidInputError, match="size"):
        SyntheticHands("train", 0)
    with pytest.raises(InvalidInputError, match="config"):
        SyntheticHands("train", 1, config={"camera": None})
    with pytest.raises(IndexError):
        SyntheticHands("train", 2, config=CFG)[2]
    assert np.isfinite(SyntheticHands("train", 1, config=CFG)[0].pos.numpy()).all()
