"""SyntheticLidar: the embedded default dataset (determinism, splits, labels, boxes, speed)."""

import dataclasses

import numpy as np
import pytest
import torch

from geo3d.datasets import SyntheticLidar
from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import points_in_boxes
from geo3d.sim import CLASSES, SceneConfig, SimConfig, SpinningLidar

SMALL = SimConfig(
    scene=SceneConfig(ground_extent=60.0, num_buildings=(1, 3), num_walls=(0, 1),
                      num_poles=(1, 2), num_trees=(1, 2), num_bushes=(0, 1), num_cars=(3, 6),
                      num_pedestrians=(2, 4), num_cyclists=(1, 2), ego_s=(-5.0, 5.0)),
    lidar=SpinningLidar(channels=16, azimuth_steps=360))
KEYS = ("pos", "x", "y", "instance", "boxes", "box_labels", "track_id", "ego_pose")


def _same(a, b):
    return all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in KEYS) \
        and a.frame == b.frame


def test_items_are_deterministic_and_independent_of_access_order():
    a = SyntheticLidar("train", 4, seed=3, config=SMALL)
    b = SyntheticLidar("train", 4, seed=3, config=SMALL)
    first = [a[i] for i in range(4)]
    again = [b[i] for i in reversed(range(4))][::-1]
    assert all(_same(x, y) for x, y in zip(first, again))
    assert _same(a[-1], first[3]) and _same(a[-4], first[0])  # negative indices like lists
    assert _same(a[np.int64(2)], first[2])


def test_seeds_and_splits_never_share_scenes():
    items = [SyntheticLidar(split, 3, seed=seed, config=SMALL)[i]
             for split in ("train", "val", "test") for seed in (0, 1) for i in range(3)]
    for i in range(len(items)):
        for j in range(i):
            assert not torch.equal(items[i].ego_pose, items[j].ego_pose)


def test_attributes_shapes_and_dtypes():
    for data in SyntheticLidar("val", 3, config=SMALL):
        n, k = data.num_nodes, data.boxes.shape[0]
        assert set(KEYS + ("frame",)) <= set(data.keys())
        assert data.pos.shape == (n, 3) and data.pos.dtype == torch.float32
        assert data.x.shape == (n, 1) and data.x.dtype == torch.float32
        assert ((data.x >= 0) & (data.x <= 1)).all()
        assert data.y.dtype == data.instance.dtype == torch.long
        assert ((data.y >= 0) & (data.y < len(CLASSES))).all()
        assert data.boxes.shape == (k, 7) and data.boxes.dtype == torch.float32
        assert data.box_labels.dtype == data.track_id.dtype == torch.long
        assert data.box_labels.shape == data.track_id.shape == (k,)
        assert ((data.box_labels >= 0) & (data.box_labels < 3)).all()
        assert data.frame == 0 and data.ego_pose.shape == (1, 4, 4)
        r = data.pos.norm(dim=1)
        assert r.min() >= SMALL.lidar.min_range and r.max() <= SMALL.lidar.max_range


def test_instances_match_boxes_and_labels():
    for data in SyntheticLidar("test", 3, config=SMALL):
        k = data.boxes.shape[0]
        assert ((data.instance >= -1) & (data.instance < k)).all()
        assert torch.equal(torch.unique(data.instance[data.instance >= 0]), torch.arange(k))
        obj = data.instance >= 0
        assert torch.equal(data.y[obj], data.box_labels[data.instance[obj]])
        assert torch.equal(obj, data.y < 3)  # object classes <=> an instance
        assert (data.boxes[:, 3:6] > 0).all()
        assert ((data.boxes[:, 6] >= -np.pi) & (data.boxes[:, 6] < np.pi)).all()
        assert (data.track_id.diff() > 0).all()


def test_object_points_fall_in_their_boxes_with_default_noise():
    ds = SyntheticLidar("train", 3, seed=1)  # the default 64-beam sensor and scenes
    inside = total = 0
    for data in ds:
        assert data.boxes.shape[0] > 0
        for k in range(data.boxes.shape[0]):
            pts = data.pos[data.instance == k]
            inside += int((points_in_boxes(pts, data.boxes[k:k + 1]) == 0).sum())
            total += len(pts)
    assert total > 1000 and inside / total >= 0.99
    # Without the margin, range noise pushes a visible share of points outside.
    tight = SyntheticLidar("train", 1, seed=1, config=SimConfig(box_margin=0.0))[0]
    out = [(points_in_boxes(tight.pos[tight.instance == k], tight.boxes[k:k + 1]) < 0).sum()
           for k in range(tight.boxes.shape[0])]
    assert sum(int(o) for o in out) > 0


def test_default_frame_is_kitti_like():
    data = SyntheticLidar("train", 2, seed=7)[1]  # frame time: benchmarks/simulator.py
    assert 80_000 < data.num_nodes <= 64 * 1800
    present = set(data.y.unique().tolist())
    assert {CLASSES.index("ground"), CLASSES.index("car")} <= present and len(present) >= 4
    el = torch.rad2deg(torch.asin(data.pos[:, 2] / data.pos.norm(dim=1)))
    assert el.max() < 2.0 + 0.01 and el.min() > -24.8 - 0.01


def test_cache_returns_copies():
    ds = SyntheticLidar("train", 2, config=SMALL, cache=True)
    a = ds[1]
    a.pos += 100.0
    b = ds[1]
    assert not torch.equal(a.pos, b.pos)
    assert _same(b, SyntheticLidar("train", 2, config=SMALL)[1])


def test_index_errors():
    ds = SyntheticLidar("train", 3, config=SMALL)
    assert len(ds) == 3
    for i in (3, -4, 100):
        with pytest.raises(IndexError):
            ds[i]
    with pytest.raises(InvalidInputError, match="index"):
        ds[1.0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="training"), "split"),
    (dict(split=None), "split"),
    (dict(size=0), "size"),
    (dict(size=-2), "size"),
    (dict(size=2.0), "size"),
    (dict(seed=-1), "seed"),
    (dict(seed=True), "seed"),
    (dict(config=SceneConfig()), "config"),
    (dict(cache=1), "cache"),
])
def test_bad_arguments_are_rejected(kwargs, match):
    args = dict(split="train", size=2)
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        SyntheticLidar(**args)


def test_bad_config_values_are_rejected():
    with pytest.raises(InvalidInputError, match="num_cars"):
        SimConfig(scene=SceneConfig(num_cars=(3, 1)))
    with pytest.raises(InvalidInputError, match="dropout"):
        dataclasses.replace(SMALL, lidar=SpinningLidar(dropout=2.0))
