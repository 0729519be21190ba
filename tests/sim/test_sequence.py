"""Simulated frames and sequences: tracks, boxes, ego poses and determinism."""

import dataclasses

import numpy as np
import pytest
import torch

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import points_in_boxes
from geo3d.sim.classes import CLASSES
from geo3d.sim.layout import SceneConfig, generate_layout
from geo3d.sim.lidar import SpinningLidar
from geo3d.sim.sequence import SimConfig, iter_sequence, simulate_frame, simulate_sequence

SMALL = SimConfig(
    scene=SceneConfig(ground_extent=80.0, num_buildings=(2, 4), num_walls=(0, 2),
                      num_poles=(2, 4), num_trees=(2, 4), num_bushes=(0, 2), num_cars=(6, 10),
                      num_pedestrians=(4, 6), num_cyclists=(2, 3), ego_s=(-10.0, 0.0)),
    lidar=SpinningLidar(channels=32, azimuth_steps=720))
IDEAL = dataclasses.replace(SMALL, lidar=dataclasses.replace(
    SMALL.lidar, range_noise=0.0, dropout=0.0, intensity_noise=0.0), box_margin=0.0)
MAX_SPEED = {0: 15.0, 1: 1.6, 2: 7.0}  # car, pedestrian, cyclist (m/s)


@pytest.fixture(scope="module")
def sequence():
    return simulate_sequence(3, 10, SMALL)


def _world(frame, xyz):
    pose = frame.ego_pose[0].double()
    return xyz.double() @ pose[:3, :3].T + pose[:3, 3]


def test_frames_are_numbered_and_the_ego_drives(sequence):
    assert [f.frame for f in sequence] == list(range(10))
    origin = torch.stack([f.ego_pose[0, :3, 3] for f in sequence]).double()
    step = (origin[1:] - origin[:-1]).norm(dim=1)
    assert (step > 0.1).all() and (step <= 12.0 * 0.1 + 1e-3).all()
    for f in sequence:
        rot = f.ego_pose[0, :3, :3].double()
        assert torch.allclose(rot.T @ rot, torch.eye(3, dtype=torch.float64), atol=1e-5)
        assert f.ego_pose.shape == (1, 4, 4) and f.ego_pose.dtype == torch.float32


def test_tracks_persist_and_move_plausibly(sequence):
    seen = {}
    for prev, cur in zip(sequence[:-1], sequence[1:]):
        common = np.intersect1d(prev.track_id.numpy(), cur.track_id.numpy())
        assert len(common) >= 0.8 * len(prev.track_id)  # most objects stay visible
        for t in common:
            i = int((prev.track_id == t).nonzero())
            j = int((cur.track_id == t).nonzero())
            assert prev.box_labels[i] == cur.box_labels[j]
            move = (_world(cur, cur.boxes[j, :3]) - _world(prev, prev.boxes[i, :3])).norm()
            assert move <= MAX_SPEED[int(cur.box_labels[j])] * 0.1 + 0.05, (t, float(move))
            # The same mesh: length and height stay (width wobbles as people are turned).
            assert torch.allclose(prev.boxes[i, [3, 5]], cur.boxes[j, [3, 5]], atol=0.15)
            seen[int(t)] = seen.get(int(t), 0) + float(move)
    assert any(v > 0.5 for v in seen.values())  # something actually moves


def test_frame_attributes(sequence):
    for f in sequence:
        n, k = f.num_nodes, len(f.boxes)
        assert f.pos.shape == (n, 3) and f.pos.dtype == torch.float32
        assert f.x.shape == (n, 1) and f.x.dtype == torch.float32
        assert f.y.shape == (n,) and f.y.dtype == torch.long
        assert f.instance.shape == (n,) and f.instance.dtype == torch.long
        assert f.boxes.shape == (k, 7) and f.boxes.dtype == torch.float32
        assert f.box_labels.shape == (k,) and f.track_id.shape == (k,)
        assert ((f.y >= 0) & (f.y < len(CLASSES))).all()
        assert (f.track_id[1:] > f.track_id[:-1]).all()  # stable order by track id
        assert set(f.instance.unique().tolist()) == set(range(-1, k)) - ({-1} if (
            f.instance >= 0).all() else set())  # every box has points
        obj = f.instance >= 0
        assert torch.equal(f.y[obj], f.box_labels[f.instance[obj]])
        assert (f.y[~obj] >= 3).all()
        assert (f.boxes[:, 3:6] > 0).all()
        assert ((f.boxes[:, 6] >= -np.pi) & (f.boxes[:, 6] < np.pi)).all()


def test_noise_free_points_land_on_the_terrain_and_in_tight_boxes():
    frames = simulate_sequence(5, 2, IDEAL)
    terrain = generate_layout(IDEAL.scene, np.random.default_rng(5)).terrain
    for f in frames:
        ground = f.y == CLASSES.index("ground")
        world = _world(f, f.pos[ground]).numpy()
        np.testing.assert_allclose(world[:, 2], terrain.height(world[:, 0], world[:, 1]),
                                   atol=2e-4)
        for k in range(len(f.boxes)):
            inside = points_in_boxes(f.pos[f.instance == k], f.boxes[k:k + 1])
            assert (inside == 0).all()


def test_boxes_match_the_object_meshes():
    config = dataclasses.replace(SMALL, box_margin=0.1)
    frame = simulate_frame(4, config)
    layout = generate_layout(config.scene, np.random.default_rng(4))
    for box, t in zip(frame.boxes, frame.track_id):
        extents = layout.agents[int(t)].mesh.extents
        # The yaw-aligned extent of the (possibly slightly tilted) mesh, plus the margin.
        assert torch.allclose(box[3:6].double(), torch.tensor(extents) + 0.2, atol=0.12)


def test_sequences_are_deterministic_and_seed_dependent():
    a = simulate_sequence(11, 2, SMALL)
    b = list(zip(range(2), iter_sequence(np.random.SeedSequence(11), SMALL)))
    c = simulate_sequence(np.random.default_rng(11), 2, SMALL)
    d = simulate_sequence(12, 2, SMALL)
    for x, (_, y), z in zip(a, b, c):  # an int seeds like SeedSequence(int) and default_rng
        for key in ("pos", "x", "y", "instance", "boxes", "track_id", "ego_pose"):
            assert torch.equal(x[key], y[key]) and torch.equal(x[key], z[key]), key
    assert a[0].pos.shape != d[0].pos.shape or not torch.equal(a[0].pos, d[0].pos)


def test_single_frame_is_the_first_sequence_frame():
    frame = simulate_frame(2, SMALL)
    first = simulate_sequence(2, 1, SMALL)[0]
    assert frame.frame == 0 and torch.equal(frame.pos, first.pos)


@pytest.mark.parametrize("length", [0, -1, 1.5, True])
def test_bad_length_is_rejected(length):
    with pytest.raises(InvalidInputError, match="length"):
        simulate_sequence(0, length, SMALL)


@pytest.mark.parametrize("seed", [-1, 1.0, "a", None])
def test_bad_seed_is_rejected(seed):
    with pytest.raises(InvalidInputError, match="seed"):
        simulate_frame(seed, SMALL)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scene=None), "scene"),
    (dict(lidar=SceneConfig()), "lidar"),
    (dict(motion=1), "motion"),
    (dict(box_margin=-0.1), "box_margin"),
    (dict(frame_period=0.0), "frame_period"),
])
def test_bad_sim_config_is_rejected(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        SimConfig(**kwargs)
    with pytest.raises(InvalidInputError, match="config"):
        simulate_frame(0, SceneConfig())
