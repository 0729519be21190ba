"""The AB3DMOT tracker: Kalman filter, GIoU / association, births, deaths, ego motion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st
from scipy.spatial import ConvexHull
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry import box_corners, box_iou_3d
from geo3d.tasks.tracking import (KalmanConfig, Tracker, TrackerConfig, affinity_matrix,
                                  box_giou_3d, boxes_from_world, boxes_to_world, hungarian_match)
from geo3d.tasks.tracking.association import _hull_area
from geo3d.tasks.tracking.kalman import kf_init, kf_predict, kf_update, wrap_angle


def _random_boxes(rng, n, spread=3.0):
    b = np.zeros((n, 7))
    b[:, :3] = rng.uniform(-spread, spread, (n, 3))
    b[:, 3:6] = rng.uniform(0.3, 4.0, (n, 3))
    b[:, 6] = rng.uniform(-4, 4, n)
    return b


def _giou_reference(a, b):
    """AB3DMOT's GIoU with scipy's ConvexHull, one pair at a time."""
    inter = box_iou_3d(torch.tensor(a[None]), torch.tensor(b[None])).item()
    va, vb = np.prod(a[3:6]), np.prod(b[3:6])
    union = (va + vb) / (1 + inter)
    pts = np.concatenate([box_corners(torch.tensor(x[None]))[0, :4, :2].numpy() for x in (a, b)])
    height = max(a[2] + a[5] / 2, b[2] + b[5] / 2) - min(a[2] - a[5] / 2, b[2] - b[5] / 2)
    c = ConvexHull(pts).volume * height
    return inter - (c - union) / c


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_giou_matches_scipy_convex_hull(dtype):
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 12), _random_boxes(rng, 9)
    got = box_giou_3d(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype))
    assert got.dtype == dtype and got.shape == (12, 9)
    a32, b32 = (torch.tensor(x, dtype=dtype).double().numpy() for x in (a, b))
    ref = np.array([[_giou_reference(x, y) for y in b32] for x in a32])
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(got.double().numpy(), ref, atol=tol)
    iou = box_iou_3d(torch.tensor(a), torch.tensor(b)).numpy()
    assert (got.double().numpy() <= iou + tol).all() and (got.double().numpy() >= -1 - tol).all()


def test_giou_identical_aligned_and_far_apart():
    box = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.3]], dtype=torch.float64)
    assert box_giou_3d(box, box).item() == pytest.approx(1.0, abs=1e-12)
    far = box.clone()
    far[0, 0] += 1000
    assert -1 < box_giou_3d(box, far).item() < -0.99
    # Axis-aligned boxes side by side in x: hull = bounding box (hand computed).
    a = torch.tensor([[0.0, 0, 0, 2, 2, 2, 0]], dtype=torch.float64)
    b = torch.tensor([[3.0, 0, 0, 2, 2, 2, 0]], dtype=torch.float64)  # gap of 1 between
    assert box_giou_3d(a, b).item() == pytest.approx(16 / 20 - 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=3, max_size=8))
@example([(0.0, 0.0), (0.0, -1.0), (1.0, 0.0), (-2.220446049250313e-16, -1.0)])  # near-duplicate start
def test_hull_area_matches_scipy(points):
    pts = np.array(points, dtype=np.float64)
    centred = pts - pts.mean(0)
    if np.linalg.matrix_rank(centred, tol=1e-6) < 2:
        return
    try:
        ref = ConvexHull(pts).volume
    except Exception:  # scipy rejects (nearly) degenerate sets
        return
    # Pad to 8 points by repeating (duplicates must not change the area).
    padded = np.concatenate([pts, np.repeat(pts[:1], 8 - len(pts), 0)])[None]
    assert _hull_area(padded)[0] == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_affinity_metrics_and_bad_input():
    rng = np.random.default_rng(1)
    a, b = torch.tensor(_random_boxes(rng, 5)), torch.tensor(_random_boxes(rng, 4))
    torch.testing.assert_close(affinity_matrix(a, b, "iou_3d"), box_iou_3d(a, b))
    d = torch.cdist(a[:, :3], b[:, :3])
    torch.testing.assert_close(affinity_matrix(a, b, "distance"), -d)
    with pytest.raises(InvalidInputError, match="metric"):
        affinity_matrix(a, b, "iou_2d")
    with pytest.raises(InvalidInputError, match="boxes_a"):
        affinity_matrix(a[:, :6], b)


def test_hungarian_respects_classes_and_threshold():
    aff = np.array([[0.9, 0.8], [0.85, 0.1]])
    rows, cols = hungarian_match(aff, 0.05, np.array([0, 0]), np.array([0, 0]))
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]  # 0.8 + 0.85 > 0.9 + 0.1
    rows, cols = hungarian_match(aff, 0.5, np.array([0, 0]), np.array([0, 0]))
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]
    rows, cols = hungarian_match(aff, 0.05, np.array([0, 1]), np.array([1, 0]))
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]
    rows, cols = hungarian_match(aff, 0.95, np.array([0, 0]), np.array([0, 0]))
    assert rows.size == 0


def test_kalman_learns_constant_velocity_and_wraps_yaw():
    cfg = KalmanConfig()
    box = np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, math.pi - 0.05]])
    state = kf_init(box, cfg)
    vel = np.array([0.5, -0.2, 0.0])
    for t in range(1, 30):
        state = kf_predict(state, cfg)
        meas = box.copy()
        meas[0, :3] += t * vel
        meas[0, 6] = wrap_angle(meas[0, 6] + 0.01 * t)  # crosses +pi
        state = kf_update(state, meas, cfg)
    np.testing.assert_allclose(state.velocity()[0], vel, atol=1e-3)
    assert -math.pi <= state.boxes()[0, 6] < math.pi
    assert abs(wrap_angle(state.boxes()[0, 6] - (math.pi - 0.05 + 0.29))) < 0.02
    # A detection pointing backwards flips the track instead of turning it.
    flipped = state.boxes().copy()
    flipped[0, 6] = wrap_angle(flipped[0, 6] + math.pi)
    after = kf_update(kf_predict(state, cfg), flipped, cfg)
    assert abs(wrap_angle(after.boxes()[0, 6] - flipped[0, 6])) < 0.05


def _scene(num_frames, objects, step_fn=None):
    """Frames of boxes moving straight: objects = [(x, y, vx, vy, yaw, label)]."""
    frames = []
    for t in range(num_frames):
        boxes = [[x + vx * t, y + vy * t, 0.0, 4.0, 1.8, 1.5, yaw] for x, y, vx, vy, yaw, _ in objects]
        frames.append(Data(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 7),
                           box_labels=torch.tensor([o[5] for o in objects], dtype=torch.long),
                           box_scores=torch.full((len(objects),), 0.9), frame=t))
    return frames


@pytest.mark.parametrize("metric", ["iou_3d", "giou_3d", "distance"])
def test_tracks_keep_their_ids(metric):
    objects = [(0, 0, 0.8, 0, 0.0, 0), (0, 6, -0.5, 0, math.pi, 0), (10, -6, 0, 0.4, math.pi / 2, 1),
               (10.2, -6, 0, -0.4, -math.pi / 2, 2)]  # last two overlap but differ in class
    tracker = Tracker(metric=metric)
    seen = []
    for frame in _scene(25, objects):
        before = frame.boxes.clone()
        out = tracker.update(frame)
        assert torch.equal(frame.boxes, before)  # input untouched
        assert out.boxes.dtype == torch.float32 and out.track_id.dtype == torch.long
        assert out.frame == frame.frame
        seen.append(out)
    assert all(o.track_id.tolist() == [0, 1, 2, 3] for o in seen)
    assert seen[-1].box_labels.tolist() == [0, 0, 1, 2]
    torch.testing.assert_close(seen[-1].boxes[:, :2], _scene(25, objects)[-1].boxes[:, :2], atol=0.05, rtol=0)


def test_births_min_hits_deaths_and_coasting():
    base = (0, 0, 0.5, 0, 0.0, 0)
    frames = _scene(12, [base, (30, 0, 0, 0, 0.0, 0)])
    late = _scene(12, [base, (30, 0, 0, 0, 0.0, 0), (-20, 5, 0, 0, 0.0, 1)])
    stream = frames[:5] + late[5:9] + [_scene(12, [base])[t] for t in range(9, 12)]
    tracker = Tracker(min_hits=3, max_age=1)
    ids, alive = [], []
    for f in stream:
        ids.append(tracker.update(f).track_id.tolist())
        alive.append(len(tracker))
    assert ids[0] == [0, 1]  # the first min_hits frames report everything
    assert ids[5] == [0, 1] and ids[6] == [0, 1] and ids[7] == [0, 1, 2]  # third hit -> reported
    assert ids[9] == [0] and alive[9] == 3  # 1 and 2 missed once: alive, not reported
    assert ids[10] == [0] and alive[10] == 1  # missed twice > max_age: deleted
    coast = Tracker(min_hits=1, max_age=2, max_coast=2)
    out = [coast.update(f) for f in frames[:4] + [_scene(12, [base])[4]]]
    assert out[-1].track_id.tolist() == [0, 1]  # object 1 missing but coasting
    torch.testing.assert_close(out[-1].boxes[1, :2], torch.tensor([30.0, 0.0]), atol=0.05, rtol=0)


def test_world_frame_from_ego_pose():
    """A static object seen from a driving sensor is tracked like from a static one."""
    rng = np.random.default_rng(3)
    world = np.array([[10.0, 2.0, 0.0, 4.0, 1.8, 1.5, 0.4], [14.0, -2.0, 0.0, 4.0, 1.8, 1.5, -2.0]])
    moving, static = Tracker(metric="iou_3d"), Tracker(metric="iou_3d")
    for t in range(15):
        yaw = 0.2 * t
        pose = np.eye(4)
        pose[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
        pose[:3, 3] = [1.5 * t, 0.3 * t, 0.01 * t]
        noise = rng.normal(0, 0.02, (2, 7)) * [1, 1, 0, 0, 0, 0, 1]
        local = boxes_from_world(world + noise, pose)
        np.testing.assert_allclose(boxes_to_world(local, pose), world + noise, atol=1e-9)
        frame = Data(boxes=torch.tensor(local, dtype=torch.float32),
                     ego_pose=torch.tensor(pose, dtype=torch.float32)[None])
        out = moving.update(frame)
        ref = static.update(Data(boxes=torch.tensor(world + noise, dtype=torch.float32)))
    assert out.track_id.tolist() == ref.track_id.tolist() == [0, 1]
    np.testing.assert_allclose(boxes_to_world(out.boxes.double().numpy(), pose), ref.boxes.double().numpy(),
                               atol=1e-3)
    # Without the pose the sensor's turning (0.2 rad per frame) breaks the IoU tracks.
    blind = Tracker(metric="iou_3d", use_ego_pose=False, min_hits=1)
    for t in range(15):
        yaw = 0.2 * t
        pose = np.eye(4)
        pose[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
        pose[:3, 3] = [1.5 * t, 0.3 * t, 0.0]
        blind.update(Data(boxes=torch.tensor(boxes_from_world(world, pose), dtype=torch.float32)))
    assert blind.next_id > 2


def test_empty_frames_and_reset():
    tracker = Tracker()
    out = tracker.update(Data(boxes=torch.zeros(0, 7)))
    assert out.boxes.shape == (0, 7) and out.track_id.shape == (0,)
    tracker.update(_scene(1, [(0, 0, 0, 0, 0.0, 0)])[0])
    tracker.reset()
    assert len(tracker) == 0 and tracker.update(_scene(1, [(0, 0, 0, 0, 0.0, 0)])[0]).track_id.tolist() == [0]


def test_bad_input_and_config():
    with pytest.raises(InvalidInputError, match="metric"):
        TrackerConfig(metric="iou")
    with pytest.raises(InvalidInputError, match="max_age"):
        TrackerConfig(max_age=-1)
    with pytest.raises(InvalidInputError, match="max_coast"):
        TrackerConfig(max_age=1, max_coast=2)
    with pytest.raises(InvalidInputError, match="threshold"):
        TrackerConfig(metric="distance", threshold=0.0)
    with pytest.raises(InvalidInputError, match="bad Tracker argument"):
        Tracker(metrc="iou_3d")
    tracker = Tracker()
    with pytest.raises(InvalidInputError, match="frame must be"):
        tracker.update(torch.zeros(1, 7))
    with pytest.raises(InvalidInputError, match="no boxes"):
        tracker.update(Data(pos=torch.zeros(1, 3)))
    bad = torch.zeros(1, 7)
    bad[0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="NaN"):
        tracker.update(Data(boxes=bad))
    with pytest.raises(InvalidInputError, match="negative sizes"):
        tracker.update(Data(boxes=-torch.ones(1, 7)))
    with pytest.raises(InvalidInputError, match="box_scores"):
        tracker.update(Data(boxes=torch.ones(2, 7), box_scores=torch.ones(3)))
    with pytest.raises(InvalidInputError, match="ego_pose"):
        tracker.update(Data(boxes=torch.ones(2, 7), ego_pose=torch.eye(3)))
