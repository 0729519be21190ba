"""SyntheticShapes and the procedural part-labelled shapes of geo3d.sim.shapes."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch_geometric.loader import DataLoader

from geo3d.datasets import SyntheticShapes
from geo3d.errors import InvalidInputError
from geo3d.sim.shapes import SHAPE_BUILDERS, SHAPE_PARTS

C = SyntheticShapes.NUM_CLASSES
OPTIONAL_PARTS = {"chair/arm"}


@pytest.fixture(scope="module")
def items():
    """Five shapes of every class (train, seed 0, 512 points)."""
    ds = SyntheticShapes("train", 5 * C, num_points=512)
    return [ds[i] for i in range(len(ds))]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in ("pos", "x", "y", "part"))


def test_items_are_deterministic_and_independent_of_access_order():
    a = SyntheticShapes("val", 6, num_points=256, seed=2)
    b = SyntheticShapes("val", 6, num_points=256, seed=2)
    first = [a[i] for i in range(6)]
    again = [b[i] for i in reversed(range(6))][::-1]
    assert all(_same(x, y) for x, y in zip(first, again))
    assert _same(a[-1], first[5]) and _same(a[np.int64(2)], first[2])


def test_splits_and_seeds_never_share_shapes():
    pos = [SyntheticShapes(split, C, num_points=128, seed=seed)[i].pos
           for split in ("train", "val", "test") for seed in (0, 1) for i in range(C)]
    for i in range(len(pos)):
        for j in range(i):
            assert not torch.equal(pos[i], pos[j])


def test_shapes_dtypes_and_normalisation(items):
    for data in items:
        assert data.pos.shape == data.x.shape == (512, 3)
        assert data.pos.dtype == data.x.dtype == torch.float32
        assert data.y.shape == (1,) and data.y.dtype == torch.long
        assert data.part.shape == (512,) and data.part.dtype == torch.long
        assert data.pos.mean(0).abs().max() < 1e-5
        assert abs(data.pos.norm(dim=1).max().item() - 1.0) < 1e-5
        torch.testing.assert_close(data.x.norm(dim=1), torch.ones(512), atol=1e-5, rtol=0)


def test_class_balance_and_part_ranges(items):
    labels = torch.cat([d.y for d in items])
    assert torch.equal(torch.bincount(labels, minlength=C), torch.full((C,), 5))
    ranges = SyntheticShapes.CLASS_PARTS
    assert sorted(p for r in ranges.values() for p in r) == list(range(SyntheticShapes.NUM_PARTS))
    for data in items:
        allowed = ranges[SyntheticShapes.CLASS_NAMES[data.y.item()]]
        assert data.part.min() >= allowed[0] and data.part.max() <= allowed[-1]


def test_every_part_appears_in_most_samples():
    ds = SyntheticShapes("test", 10 * C, num_points=1024)
    seen = torch.zeros(SyntheticShapes.NUM_PARTS)
    for data in ds:
        seen[torch.unique(data.part)] += 1
    for pid, name in enumerate(SyntheticShapes.PART_NAMES):
        assert seen[pid] >= (3 if name in OPTIONAL_PARTS else 10), name


def test_part_segmentation_task_puts_parts_in_y_and_class_in_category(items):
    ds = SyntheticShapes("train", 2 * C, num_points=512, task="part_segmentation")
    assert ds.num_classes == SyntheticShapes.NUM_PARTS
    for i in range(0, 2 * C, 5):
        seg, cls = ds[i], items[i]
        assert torch.equal(seg.y, cls.part) and torch.equal(seg.category, cls.y)
        assert torch.equal(seg.pos, cls.pos) and "part" not in seg
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.y.shape == (4 * 512,) and batch.category.shape == (4,)
    batch = next(iter(DataLoader(SyntheticShapes("train", 4, 64), batch_size=4)))
    assert batch.y.shape == (4,) and batch.pos.shape == (4 * 64, 3)


def test_normals_option():
    data = SyntheticShapes("train", 1, num_points=64, normals=False)[0]
    assert data.x is None and data.pos.shape == (64, 3)


@pytest.mark.parametrize("kind", ["so3", "z"])
def test_rotation_is_a_rigid_rotation_of_the_aligned_item(kind):
    plain = SyntheticShapes("test", C, num_points=256)
    turned = SyntheticShapes("test", C, num_points=256, rotate=kind)
    for i in range(C):
        a, b = plain[i], turned[i]
        assert not torch.allclose(a.pos, b.pos, atol=1e-2)
        torch.testing.assert_close(a.pos.norm(dim=1), b.pos.norm(dim=1), atol=1e-5, rtol=0)
        rot, _ = Rotation.align_vectors(b.pos.double().numpy(), a.pos.double().numpy())
        r = torch.from_numpy(rot.as_matrix()).float()
        torch.testing.assert_close(a.pos @ r.T, b.pos, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.x @ r.T, b.x, atol=1e-5, rtol=0)  # normals turn too
        torch.testing.assert_close(a.part, b.part)
        if kind == "z":
            torch.testing.assert_close(a.pos[:, 2], b.pos[:, 2], atol=1e-5, rtol=0)


def test_canonical_orientation_up_is_z():
    """Tables and lamps stand on z: their lowest points are legs/bases, the top is up."""
    ds = SyntheticShapes("train", 3 * C, num_points=1024)
    names = SyntheticShapes.PART_NAMES
    for i in range(3 * C):
        data = ds[i]
        cls = SyntheticShapes.CLASS_NAMES[data.y.item()]
        if cls in ("table", "lamp"):
            top = names[data.part[data.pos[:, 2].argmax()]]
            low = names[data.part[data.pos[:, 2].argmin()]]
            assert top in ("table/top", "lamp/shade") and low in ("table/leg", "lamp/base")
        if cls == "airplane":  # nose along +x: the fuselage holds the largest x
            assert names[data.part[data.pos[:, 0].argmax()]] == "airplane/fuselage"


def test_cache_hands_out_copies():
    ds = SyntheticShapes("train", 2, num_points=32, cache=True)
    first = ds[0]
    first.pos += 1.0
    assert torch.equal(ds[0].pos, SyntheticShapes("train", 2, num_points=32)[0].pos)


@pytest.mark.parametrize("kwargs", [
    dict(split="dev"), dict(size=0), dict(num_points=0), dict(seed=-1), dict(size=True),
    dict(task="segmentation"), dict(rotate="SO3"), dict(normals=1), dict(cache="yes")])
def test_bad_arguments_raise(kwargs):
    args = dict(split="train", size=2) | kwargs
    with pytest.raises(InvalidInputError, match=next(iter(kwargs))):
        SyntheticShapes(**args)


def test_bad_index():
    ds = SyntheticShapes("train", 2, num_points=8)
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(InvalidInputError):
        ds["0"]


@pytest.mark.parametrize("name", sorted(SHAPE_BUILDERS))
def test_builders_make_closed_outward_meshes_with_a_label_per_face(name):
    for seed in range(6):
        shape = SHAPE_BUILDERS[name](np.random.default_rng(seed))
        assert shape.face_part.shape == (len(shape.mesh.faces),)
        assert set(np.unique(shape.face_part)) <= set(range(len(SHAPE_PARTS[name])))
        assert shape.mesh.volume > 0  # outward winding: normals point out
        assert np.isfinite(shape.mesh.vertices).all()
