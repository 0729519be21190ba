"""The procedural humanoid template: topology, determinism, posing, re-triangulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from geo3d.errors import InvalidInputError
from geo3d.geometry.mesh import mesh_geometry
from geo3d.sim.humanoid import HUMANOID_PARTS, humanoid_template, pose_humanoid, retriangulate


def test_template_is_a_closed_oriented_genus_zero_mesh():
    t = humanoid_template()
    mesh = trimesh.Trimesh(t.vertices, t.faces, process=False)
    assert 500 <= len(t.vertices) <= 1500
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2 and len(mesh.split(only_watertight=False)) == 1
    assert mesh.volume > 0  # outward orientation
    assert 1.7 < t.vertices[:, 2].max() - t.vertices[:, 2].min() < 1.9
    np.testing.assert_allclose(t.weights.sum(1), 1.0)
    assert set(np.unique(t.part)) == set(range(len(HUMANOID_PARTS)))
    # left and right parts mirror each other (y -> -y)
    left = t.vertices[t.part == HUMANOID_PARTS.index("left_forearm")]
    right = t.vertices[t.part == HUMANOID_PARTS.index("right_forearm")]
    assert left[:, 1].min() > 0.3 and right[:, 1].max() < -0.3
    mesh_geometry(torch.from_numpy(t.vertices), torch.from_numpy(t.faces.T.copy()))


def _surface_distance(vertices, faces, points):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


def test_template_is_mirror_symmetric_but_not_half_turn_symmetric():
    """Left and right mirror each other, but every part has a front: a half turn about
    the vertical axis (a proper rotation) must not map the body onto itself, or
    orientation-aware models could not tell left from right without the triangulation."""
    t = humanoid_template()
    mirror = _surface_distance(t.vertices, t.faces, t.vertices * [1, -1, 1])
    half_turn = _surface_distance(t.vertices, t.faces, t.vertices * [-1, -1, 1])
    assert np.median(mirror) < 0.005
    for k, name in enumerate(HUMANOID_PARTS):
        assert half_turn[t.part == k].max() > 0.01, name


def test_template_is_deterministic():
    a, b = humanoid_template(), humanoid_template.__wrapped__()
    assert np.array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.vertices, b.vertices)


def test_posing_moves_limbs_keeps_connectivity_and_is_seeded():
    t = humanoid_template()
    rest = pose_humanoid(np.random.default_rng(0), pose_scale=0.0, noise=0.0)
    np.testing.assert_allclose(rest, t.vertices, atol=1e-12)
    a = pose_humanoid(np.random.default_rng(1))
    b = pose_humanoid(np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    hand = t.part == HUMANOID_PARTS.index("left_forearm")
    assert np.linalg.norm(a[hand] - t.vertices[hand], axis=1).max() > 0.05
    edges = trimesh.Trimesh(t.vertices, t.faces, process=False).edges_unique
    before = np.linalg.norm(t.vertices[edges[:, 0]] - t.vertices[edges[:, 1]], axis=1)
    after = np.linalg.norm(a[edges[:, 0]] - a[edges[:, 1]], axis=1)
    assert np.median(np.abs(after / before - 1)) < 0.1  # near-isometric deformation
    with pytest.raises(InvalidInputError, match="pose_scale"):
        pose_humanoid(np.random.default_rng(0), pose_scale=2.0)
    with pytest.raises(InvalidInputError, match="noise"):
        pose_humanoid(np.random.default_rng(0), noise=-1.0)


def test_retriangulation_changes_connectivity_not_the_surface():
    t = humanoid_template()
    v, f, nearest = retriangulate(t.vertices, t.faces, seed=3)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_winding_consistent and mesh.euler_number == 2
    assert abs(len(f) - len(t.faces)) <= 0.05 * len(t.faces)
    assert not (len(v) == len(t.vertices) and np.allclose(v, t.vertices))
    assert nearest.shape == (len(v),) and nearest.max() < len(t.vertices)
    closest = np.linalg.norm(v - t.vertices[nearest], axis=1)
    assert np.median(closest) < 0.05
    mesh_geometry(torch.from_numpy(v), torch.from_numpy(f.T.copy()))
