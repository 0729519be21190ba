"""Procedural layout: determinism, no overlaps (shapely reference), objects on the ground."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from geo3d.errors import InvalidInputError
from geo3d.sim.classes import CLASSES, OBJECT_CLASSES
from geo3d.sim.layout import (Road, SceneConfig, footprints_overlap, generate_layout,
                              ground_poses)
from geo3d.sim.terrain import make_ground

CONFIG = SceneConfig(max_slope=0.08, roughness=0.1)


def _polygon(box):
    x, y, l, w, yaw = box
    c, s = np.cos(yaw), np.sin(yaw)
    corners = np.array([[l, w], [-l, w], [-l, -w], [l, -w]]) / 2 @ np.array([[c, s], [-s, c]])
    return Polygon(corners + [x, y])


def _agent_footprints(layout):
    a = layout.agents
    x, y = layout.road.to_world([g.s for g in a], [g.d for g in a])
    yaw = layout.road.heading([g.s for g in a]) + np.array([g.psi for g in a])
    return np.stack([x, y, [g.length for g in a], [g.width for g in a], yaw], 1)


@pytest.fixture(scope="module")
def layouts():
    return [generate_layout(CONFIG, np.random.default_rng(s)) for s in range(4)]


def test_layout_is_deterministic():
    a = generate_layout(CONFIG, np.random.default_rng(3))
    b = generate_layout(CONFIG, np.random.default_rng(3))
    c = generate_layout(CONFIG, np.random.default_rng(4))
    assert len(a.statics) == len(b.statics) and len(a.agents) == len(b.agents)
    for m, n in zip(a.statics, b.statics):
        assert np.array_equal(m.vertices, n.vertices) and np.array_equal(m.transform, n.transform)
    for g, h in zip(a.agents, b.agents):
        assert (g.cls, g.behaviour, g.s, g.d, g.psi) == (h.cls, h.behaviour, h.s, h.d, h.psi)
    assert not np.array_equal(a.terrain.heights, c.terrain.heights)


def test_nothing_overlaps(layouts):
    for layout in layouts:
        boxes = np.concatenate([layout.static_footprints, _agent_footprints(layout)])
        polys = [_polygon(b) for b in boxes]
        for i in range(len(polys)):
            for j in range(i):
                assert polys[i].intersection(polys[j]).area < 1e-9, (i, j)


def test_counts_classes_and_zones(layouts):
    for layout in layouts:
        road = layout.road
        counts = {c: sum(a.cls == c for a in layout.agents) for c in OBJECT_CLASSES}
        assert counts["car"] <= CONFIG.num_cars[1]
        assert counts["pedestrian"] <= CONFIG.num_pedestrians[1]
        assert counts["cyclist"] <= CONFIG.num_cyclists[1]
        assert len(layout.statics) - 1 <= sum(CONFIG.num_buildings[1:] + CONFIG.num_walls[1:]
                                              + CONFIG.num_poles[1:] + CONFIG.num_trees[1:]
                                              + CONFIG.num_bushes[1:])
        assert {m.label for m in layout.statics} <= set(range(3, len(CLASSES)))
        for a in layout.agents:
            if a.behaviour == "moving" and a.cls == "car":
                assert abs(a.d) < road.lanes * road.lane_width
                assert np.cos(a.psi) * a.direction > 0.9 and -np.sign(a.d) == a.direction
            if a.behaviour == "walking":
                assert road.curb < abs(a.d) < road.curb + 4
            if a.behaviour == "parked":
                assert abs(abs(a.d) - road.parking_d) < 0.5
        assert abs(layout.ego.d) < road.lanes * road.lane_width and layout.ego.d < 0
        assert CONFIG.ego_s[0] <= layout.ego.s <= CONFIG.ego_s[1]
    assert sum(len(layout.agents) for layout in layouts) > 20


def test_objects_stand_on_the_terrain(layouts):
    for layout in layouts:
        scene = layout.scene()
        first = len(layout.statics)
        for k, agent in enumerate(layout.agents):
            v = scene.world_vertices(first + k).astype(float)
            ground = layout.terrain.height(v[:, 0], v[:, 1])
            gap = v[:, 2] - ground
            assert gap.min() > -0.08, (agent.cls, gap.min())  # sunk at most a few cm
            low = v[:, 2] < v[:, 2].min() + 0.05
            assert np.abs(gap[low]).min() < 0.05, (agent.cls, gap[low].min())  # not floating
            assert scene.meshes[first + k].instance == k
        for m in layout.statics[1:]:  # structures never float
            pose = m.transform
            assert pose[2, 3] <= layout.terrain.height(pose[0, 3], pose[1, 3]) + 1e-9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ground_poses_follow_a_planar_slope(dtype):
    terrain = make_ground(np.random.default_rng(0), extent=60.0, max_slope=0.1, roughness=0.0)
    gx, gy = np.gradient(terrain.heights, terrain.spacing)
    slope = np.array([gx.mean(), gy.mean()])
    x, y, yaw = (np.array(v, dtype) for v in ([1.0, -5.0], [2.0, 7.0], [0.3, -2.0]))
    tilted = ground_poses(terrain, x, y, yaw, [4.0, 4.0], [2.0, 2.0], [True, True])
    normal = np.array([-slope[0], -slope[1], 1.0]) / np.linalg.norm([*slope, 1.0])
    for pose in tilted:
        np.testing.assert_allclose(pose[:3, :3].T @ pose[:3, :3], np.eye(3), atol=1e-9)
        np.testing.assert_allclose(pose[:3, 2], normal, atol=1e-6)
        assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_allclose(tilted[:, 2, 3], terrain.height(x, y), atol=1e-6)
    upright = ground_poses(terrain, x, y, yaw, [4.0, 4.0], [2.0, 2.0], [False, False])
    np.testing.assert_allclose(upright[:, :3, 2], [[0, 0, 1], [0, 0, 1]])
    assert (upright[:, 2, 3] < tilted[:, 2, 3]).all()  # lowered to the lowest corner
    np.testing.assert_allclose(np.arctan2(upright[:, 1, 0], upright[:, 0, 0]), yaw, atol=1e-6)


@pytest.mark.parametrize("curvature", [0.0, 0.01, -0.02])
def test_road_is_arc_length_parametrised(curvature):
    road = Road(curvature, 3.5, 2)
    s = np.linspace(-50, 50, 2001)
    x, y = road.to_world(s, 0.0)
    step = np.hypot(np.diff(x), np.diff(y))
    np.testing.assert_allclose(step, s[1] - s[0], rtol=1e-4)
    np.testing.assert_allclose(np.arctan2(np.diff(y), np.diff(x)),
                               road.heading((s[1:] + s[:-1]) / 2), atol=1e-6)
    xl, yl = road.to_world(s, 4.0)  # 4 m to the left of the centre line
    np.testing.assert_allclose(np.hypot(xl - x, yl - y), 4.0, atol=1e-9)
    th = road.heading(s)
    np.testing.assert_allclose((xl - x) * np.cos(th) + (yl - y) * np.sin(th), 0, atol=1e-9)
    assert road.lane_d(-1, 1) == -5.25 and road.curb == 10.5


rect = st.tuples(st.floats(-5, 5), st.floats(-5, 5), st.floats(0.1, 6), st.floats(0.1, 6),
                 st.floats(-4, 4))


@settings(max_examples=300, deadline=None)
@given(rect, st.lists(rect, min_size=1, max_size=5))
def test_footprints_overlap_matches_shapely(box, others):
    got = footprints_overlap(np.array(box), np.array(others))
    a = _polygon(box)
    for hit, other in zip(got, others):
        area = a.intersection(_polygon(other)).area
        if area > 1e-6:
            assert hit
        elif not a.buffer(-1e-6).intersects(_polygon(other).buffer(-1e-6)) and \
                a.distance(_polygon(other)) > 1e-6:
            assert not hit


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_cars=(5, 2)), "num_cars"),
    (dict(num_pedestrians=(-1, 2)), "num_pedestrians"),
    (dict(num_cyclists=(0.5, 2)), "num_cyclists"),
    (dict(num_trees=[1, 2]), "num_trees"),
    (dict(parked_fraction=1.5), "parked_fraction"),
    (dict(crossing_fraction=-0.1), "crossing_fraction"),
    (dict(lanes_per_direction=(0, 1)), "lanes_per_direction"),
    (dict(ground_extent=10.0), "ground_extent"),
    (dict(max_slope=-0.1), "max_slope"),
    (dict(max_curvature=0.5), "max_curvature"),
    (dict(ego_s=(-100.0, 0.0)), "ego_s"),
    (dict(max_tries=0), "max_tries"),
])
def test_bad_scene_config_is_rejected(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        SceneConfig(**kwargs)


def test_generate_layout_rejects_bad_arguments():
    with pytest.raises(InvalidInputError, match="config"):
        generate_layout(None, np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="rng"):
        generate_layout(SceneConfig(), 0)
