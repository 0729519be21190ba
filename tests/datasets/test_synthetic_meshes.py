"""SyntheticMeshes: labels, invariance of the inputs, seeding, re-triangulation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from geo3d.datasets import SyntheticMeshes
from geo3d.errors import InvalidInputError
from geo3d.geometry.mesh import curvature_features
from geo3d.sim.humanoid import humanoid_template


def test_items_have_the_template_connectivity_and_labels():
    ds = SyntheticMeshes("train", 3)
    t = humanoid_template()
    d = ds[0]
    assert d.pos.dtype == torch.float32 and d.pos.shape == (len(t.vertices), 3)
    assert torch.equal(d.face, torch.from_numpy(t.faces.T.copy()))
    assert torch.equal(d.y, torch.arange(len(t.vertices))) and torch.equal(d.y, d.corr)
    assert torch.equal(d.part, torch.from_numpy(t.part))
    assert d.x.shape == (len(t.vertices), 2) and bool(torch.isfinite(d.x).all())
    assert ds.num_classes == len(t.vertices)
    parts = SyntheticMeshes("train", 1, task="part_segmentation")
    assert parts.num_classes == 10 and torch.equal(parts[0].y, parts[0].part)
    batch = Batch.from_data_list([ds[0], ds[1]])
    assert int(batch.face.max()) == batch.num_nodes - 1


def test_items_are_seeded_and_splits_differ():
    a, b = SyntheticMeshes("train", 2), SyntheticMeshes("train", 2)
    assert torch.equal(a[1].pos, b[1].pos) and torch.equal(a[-1].pos, a[1].pos)
    assert not torch.allclose(a[0].pos, a[1].pos)
    assert not torch.allclose(a[0].pos, SyntheticMeshes("test", 1)[0].pos)
    assert not torch.allclose(a[0].pos, SyntheticMeshes("train", 1, seed=1)[0].pos)


def test_features_are_invariant_to_the_rigid_motion():
    moved = SyntheticMeshes("val", 1)[0]
    still = SyntheticMeshes("val", 1, rotate="none")[0]
    assert not torch.allclose(moved.pos, still.pos, atol=1e-2)
    ratio = (moved.pos[1:] - moved.pos[0]).norm(dim=1) / (still.pos[1:] - still.pos[0]).norm(dim=1)
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0])), atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.x, still.x, atol=1e-3, rtol=1e-3)  # float32 rounding
    torch.testing.assert_close(still.x, curvature_features(still.pos, still.face))
    assert SyntheticMeshes("val", 1, features="none")[0].x is None


def test_retriangulated_items():
    plain = SyntheticMeshes("test", 1, rotate="none", scale_range=(1.0, 1.0))[0]
    d = SyntheticMeshes("test", 1, retriangulate=True, rotate="none", scale_range=(1.0, 1.0))[0]
    assert not (d.face.shape == plain.face.shape and torch.equal(d.face, plain.face))
    assert d.y.shape == (d.num_nodes,) and torch.equal(d.part, torch.from_numpy(humanoid_template().part)[d.y])
    dist = (d.pos - plain.pos[d.y]).norm(dim=1)  # labelled with the nearest posed vertex
    assert float(dist.median()) < 0.05
    nearest = torch.cdist(d.pos.double(), plain.pos.double()).argmin(1)
    assert float((nearest == d.y).float().mean()) > 0.99


def test_bad_arguments():
    for kwargs, name in [(dict(split="dev"), "split"), (dict(size=0), "size"),
                         (dict(task="pose"), "task"), (dict(rotate="z"), "rotate"),
                         (dict(noise=1.0), "noise"), (dict(pose_scale=-0.1), "pose_scale"),
                         (dict(scale_range=(2.0, 1.0)), "scale_range"),
                         (dict(features="xyz"), "features"), (dict(retriangulate=1), "retriangulate")]:
        args = dict(split="train", size=1) | kwargs
        with pytest.raises(InvalidInputError, match=name):
            SyntheticMeshes(**args)
    with pytest.raises(IndexError):
        SyntheticMeshes("train", 2)[2]
    cached = SyntheticMeshes("train", 1, cache=True)
    first = cached[0]
    first.pos += 1
    assert not torch.equal(cached[0].pos, first.pos)
    assert np.isfinite(cached[0].pos.numpy()).all()


def test_hks_features():
    ds = SyntheticMeshes("val", 1, features="hks")
    d, still = ds[0], SyntheticMeshes("val", 1, features="hks", rotate="none")[0]
    assert ds.num_features == 16 and d.x.shape == (d.num_nodes, 16) and d.x.dtype == torch.float32
    torch.testing.assert_close(d.x, still.x, atol=1e-3, rtol=1e-3)  # invariant to the rigid motion
    retri = SyntheticMeshes("val", 1, features="hks", retriangulate=True)[0]
    assert retri.x.shape == (retri.num_nodes, 16) and bool(torch.isfinite(retri.x).all())
