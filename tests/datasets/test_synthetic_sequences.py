"""SyntheticSequences: lists of frames with persistent track ids and ego poses."""

import pytest
import torch

from geo3d.datasets import SyntheticLidar, SyntheticSequences
from geo3d.errors import InvalidInputError
from geo3d.sim import SceneConfig, SimConfig, SpinningLidar

SMALL = SimConfig(
    scene=SceneConfig(ground_extent=60.0, num_buildings=(1, 3), num_walls=(0, 1),
                      num_poles=(1, 2), num_trees=(1, 2), num_bushes=(0, 1), num_cars=(4, 6),
                      num_pedestrians=(2, 4), num_cyclists=(1, 2), ego_s=(-5.0, 5.0)),
    lidar=SpinningLidar(channels=16, azimuth_steps=360))


def test_items_are_sequences_with_persistent_tracks():
    ds = SyntheticSequences("train", 2, length=5, config=SMALL)
    assert len(ds) == 2
    seq = ds[1]
    assert isinstance(seq, list) and len(seq) == 5
    assert [f.frame for f in seq] == list(range(5))
    tracks = [set(f.track_id.tolist()) for f in seq]
    assert len(set.intersection(*tracks)) >= 1
    labels = {}
    for f in seq:  # a track id always names an object of the same class
        for t, c in zip(f.track_id.tolist(), f.box_labels.tolist()):
            assert labels.setdefault(t, c) == c
    poses = torch.stack([f.ego_pose[0] for f in seq])
    assert (poses[1:, :3, 3] - poses[:-1, :3, 3]).norm(dim=1).min() > 0.1


def test_sequences_are_deterministic_and_distinct():
    a = SyntheticSequences("val", 3, length=2, seed=4, config=SMALL)
    b = SyntheticSequences("val", 3, length=2, seed=4, config=SMALL, cache=True)
    for x, y in zip(a[2], b[-1]):
        assert torch.equal(x.pos, y.pos) and torch.equal(x.boxes, y.boxes)
    assert not torch.equal(a[0][0].ego_pose, a[1][0].ego_pose)
    frame = SyntheticLidar("val", 3, seed=4, config=SMALL)[0]
    assert not torch.equal(a[0][0].ego_pose, frame.ego_pose)  # its own seed stream
    assert "length=2" in repr(a)
    streamed = list(a.iter_frames(-1))  # lazily, frame by frame
    assert len(streamed) == 2 and all(torch.equal(x.pos, y.pos) for x, y in zip(streamed, a[2]))


@pytest.mark.parametrize("length", [0, -3, 2.0, None])
def test_bad_length_is_rejected(length):
    with pytest.raises(InvalidInputError, match="length"):
        SyntheticSequences("train", 2, length=length, config=SMALL)


def test_bad_split_and_index():
    with pytest.raises(InvalidInputError, match="split"):
        SyntheticSequences("dev", 2, length=2)
    with pytest.raises(IndexError):
        SyntheticSequences("train", 2, length=2, config=SMALL)[2]
