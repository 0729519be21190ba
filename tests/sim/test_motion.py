"""Traffic kinematics: speed limits, lane keeping, queueing, and no overlaps ever."""

import dataclasses

import numpy as np
import pytest
import trimesh
from shapely.geometry import Polygon

from geo3d.errors import InvalidInputError
from geo3d.sim.layout import Agent, Layout, Road, SceneConfig, generate_layout
from geo3d.sim.motion import MotionConfig, Traffic
from geo3d.sim.terrain import make_ground

DT = 0.1
CONFIG = SceneConfig(num_cars=(10, 16), num_pedestrians=(6, 10), num_cyclists=(2, 4),
                     crossing_fraction=0.5)


def _polygon(box):
    x, y, l, w, yaw = box
    c, s = np.cos(yaw), np.sin(yaw)
    corners = np.array([[l, w], [-l, w], [-l, -w], [l, -w]]) / 2 @ np.array([[c, s], [-s, c]])
    return Polygon(corners + [x, y])


def _run(seed, steps):
    rng = np.random.default_rng(seed)
    layout = generate_layout(CONFIG, rng)
    traffic = Traffic(layout, MotionConfig(), rng)
    states = [traffic.initial_state()]
    for _ in range(steps):
        states.append(traffic.step(states[-1], DT, rng))
    return layout, traffic, states


@pytest.fixture(scope="module")
def runs():
    return [_run(seed, 60) for seed in range(3)]


def test_speeds_stay_within_their_ranges(runs):
    limits = {"car": 15.0, "cyclist": 7.0, "pedestrian": 1.6}
    for layout, traffic, states in runs:
        agents = (*layout.agents, layout.ego)
        xy = np.array([layout.road.to_world(s.s, s.d) for s in states])  # [T, 2, n]
        speed = np.linalg.norm(np.diff(xy, axis=0), axis=1) / DT  # world speed [T-1, n]
        for k, a in enumerate(agents):
            top = 12.0 if a.behaviour == "ego" else limits[a.cls]
            assert speed[:, k].max() <= top * 1.001 + 1e-9, (a.cls, a.behaviour)
            if a.behaviour == "parked":
                assert speed[:, k].max() == 0.0
            if a.cls == "pedestrian":  # walking, or stopped for an obstacle
                assert ((speed[:, k] >= 0.99) | (speed[:, k] == 0)).all()
        assert speed[:, -1].mean() > 2.0  # the ego drives


def test_nobody_ever_overlaps(runs):
    for layout, traffic, states in runs:
        statics = [_polygon(b) for b in layout.static_footprints]
        for state in states[::3]:
            polys = [_polygon(b) for b in traffic.footprints(state)]
            for i, p in enumerate(polys):
                for j in range(i):
                    assert p.intersection(polys[j]).area < 1e-9, (i, j)
                for q in statics:
                    assert p.intersection(q).area < 1e-9


def test_vehicles_keep_their_lane_and_turn_gently(runs):
    for layout, traffic, states in runs:
        moving = [k for k, a in enumerate((*layout.agents, layout.ego))
                  if a.behaviour in ("moving", "ego")]
        d = np.array([s.d for s in states])[:, moving]
        assert np.abs(d - traffic.lane_d[moving]).max() < 0.8
        psi = np.array([s.psi for s in states])[:, moving]
        along = np.cos(psi) * traffic.direction[moving]
        assert along.min() > 0.98  # heading along the road in the travel direction
        yaw = layout.road.heading(np.array([s.s for s in states])[:, moving]) + psi
        rate = np.abs(np.angle(np.exp(1j * np.diff(yaw, axis=0)))) / DT
        assert rate.max() < 15.0 * MotionConfig().max_curvature + 0.1


def test_crossing_pedestrians_reach_the_far_side():
    rng = np.random.default_rng(0)
    config = dataclasses.replace(CONFIG, crossing_fraction=1.0, num_cars=(0, 0),
                                 num_cyclists=(0, 0))
    layout = generate_layout(config, rng)
    traffic = Traffic(layout, MotionConfig(), rng)
    state = traffic.initial_state()
    for _ in range(250):  # 25 s: enough to cross 2 x 14 m at 1 m/s
        state = traffic.step(state, DT, rng)
    peds = [k for k, a in enumerate(layout.agents) if a.behaviour == "crossing"]
    assert peds
    arrived = np.abs(state.d[peds] - traffic.lane_d[peds]) < 1.5
    assert arrived.mean() >= 0.75


def _straight_layout(agents):
    terrain = make_ground(np.random.default_rng(0), extent=200.0, max_slope=0.0, roughness=0.0)
    ego = Agent("car", "ego", None, 4.6, 1.9, -90.0, 5.25, 0.0, 5.25, 1, 0.6)  # out of the way
    return Layout(terrain, Road(0.0, 3.5, 2), (), np.zeros((0, 5)), tuple(agents), ego)


def test_a_car_queues_behind_a_stopped_car():
    car = trimesh.creation.box(extents=(4.5, 1.8, 1.5))
    leader = Agent("car", "parked", car, 4.5, 1.8, 30.0, -1.75, 0.0, -1.75, 1, 0.6)
    follower = Agent("car", "moving", car, 4.5, 1.8, 0.0, -1.75, 0.0, -1.75, 1, 0.6)
    layout = _straight_layout([leader, follower])
    rng = np.random.default_rng(0)
    traffic = Traffic(layout, MotionConfig(car_speed=(12.0, 12.0)), rng)
    state = traffic.initial_state()
    gaps = []
    for _ in range(200):
        state = traffic.step(state, DT, rng)
        gaps.append(state.s[0] - state.s[1] - 4.5)
    assert min(gaps) > 1.0  # braked in time (IDM), never touched
    assert state.v[1] < 0.05 and 1.0 < gaps[-1] < 4.0  # and waits behind it


def test_traffic_is_deterministic():
    _, _, a = _run(7, 10)
    _, _, b = _run(7, 10)
    for x, y in zip(a, b):
        assert np.array_equal(x.s, y.s) and np.array_equal(x.psi, y.psi)


@pytest.mark.parametrize("kwargs, match", [
    (dict(car_speed=(5.0, 1.0)), "car_speed"),
    (dict(pedestrian_speed=(-1.0, 1.0)), "pedestrian_speed"),
    (dict(max_accel=0.0), "max_accel"),
    (dict(max_curvature=float("nan")), "max_curvature"),
    (dict(heading_noise=-0.1), "heading_noise"),
])
def test_bad_motion_config_is_rejected(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        MotionConfig(**kwargs)


def test_step_rejects_bad_dt():
    layout, traffic, states = _run(0, 0)
    with pytest.raises(InvalidInputError, match="dt"):
        traffic.step(states[0], 0.0, np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="config"):
        Traffic(layout, None, np.random.default_rng(0))
