"""Mesh operators: normals, gauges, log map, transport, curvature features, robustness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

import geo3d.geometry.mesh as mesh_ops
from geo3d.errors import InvalidInputError
from geo3d.geometry.mesh import (curvature_features, mesh_edges, mesh_geometry, tangent_frames,
                                 vertex_areas, vertex_normals)

DTYPES = (torch.float32, torch.float64)


def _bumpy_sphere(dtype=torch.float64, subdivisions=2, seed=0):
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    rng = np.random.default_rng(seed)
    v = m.vertices * (1 + 0.2 * rng.random((len(m.vertices), 1)))
    return torch.tensor(v, dtype=dtype), torch.tensor(m.faces.T.copy())


def _grid(n=5):
    """A flat n x n grid in the z = 0 plane (has a boundary), counter-clockwise from +z."""
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="xy")
    pos = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1)
    faces = []
    for j in range(n - 1):
        for i in range(n - 1):
            a, b, c, d = j * n + i, j * n + i + 1, (j + 1) * n + i, (j + 1) * n + i + 1
            faces += [(a, b, d), (a, d, c)]
    return torch.tensor(pos), torch.tensor(np.array(faces).T.copy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_vertex_normals_match_a_loop_reference(dtype):
    pos, face = _bumpy_sphere(dtype)
    ref = np.zeros((pos.shape[0], 3))
    p = pos.double().numpy()
    for a, b, c in face.T.tolist():  # area-weighted: the unnormalised cross product
        n = np.cross(p[b] - p[a], p[c] - p[a])
        for v in (a, b, c):
            ref[v] += n
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    got = vertex_normals(pos, face)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.double().numpy(), ref, atol=1e-5 if dtype == torch.float32 else 1e-12)
    assert float((got * pos).sum(1).min()) > 0  # outward on a sphere


def test_vertex_areas_sum_to_the_surface_area():
    pos, face = _bumpy_sphere()
    mesh = trimesh.Trimesh(pos.numpy(), face.T.numpy(), process=False)
    assert math.isclose(float(vertex_areas(pos, face).sum()), mesh.area, rel_tol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=3, max_size=3).filter(lambda v: sum(x * x for x in v) > 1e-3))
def test_tangent_frames_are_orthonormal_and_right_handed(v):
    n = torch.tensor([v], dtype=torch.float64)
    n = n / n.norm()
    e1, e2 = tangent_frames(n)
    frame = torch.cat([e1, e2, n]).T  # columns e1, e2, n
    torch.testing.assert_close(frame.T @ frame, torch.eye(3, dtype=torch.float64))
    assert math.isclose(float(torch.linalg.det(frame)), 1.0, rel_tol=1e-12)


def test_log_map_and_transport_on_a_plane():
    pos, face = _grid()
    g = mesh_geometry(pos, face)
    q, p = g.edge_index
    d = pos[q] - pos[p]
    torch.testing.assert_close(g.radius, d.norm(dim=1))
    # in the plane the gauge is the same everywhere, so theta is the planar angle from e1
    ref = torch.atan2((d * g.e2[p]).sum(1), (d * g.e1[p]).sum(1))
    torch.testing.assert_close(g.theta, ref)
    expected = torch.atan2(d[:, 1], d[:, 0]) - torch.atan2(g.e1[0, 1], g.e1[0, 0])
    torch.testing.assert_close(torch.remainder(g.theta - expected + math.pi, 2 * math.pi) - math.pi,
                               torch.zeros_like(g.theta), atol=1e-12, rtol=0)
    torch.testing.assert_close(g.transport, torch.zeros_like(g.transport), atol=1e-12, rtol=0)
    assert g.edge_index.shape[1] == 2 * (2 * 4 * 5 + 16)  # grid edges + diagonals, both ways


@pytest.mark.parametrize("dtype", DTYPES)
def test_transport_is_inverse_along_reversed_edges_and_keeps_the_tangent_plane(dtype):
    pos, face = _bumpy_sphere(dtype)
    g = mesh_geometry(pos, face)
    q, p = g.edge_index
    key = {(a, b): i for i, (a, b) in enumerate(zip(q.tolist(), p.tolist()))}
    rev = torch.tensor([key[(b, a)] for a, b in zip(q.tolist(), p.tolist())])
    s = g.transport + g.transport[rev]
    wrapped = torch.atan2(torch.sin(s), torch.cos(s))
    assert float(wrapped.abs().max()) < (1e-5 if dtype == torch.float32 else 1e-12)


def test_transport_matches_rotation_of_normals():
    """Independent reference: scipy's rotation aligning n_q to n_p applied to e1_q."""
    pos, face = _bumpy_sphere()
    g = mesh_geometry(pos, face)
    for i in range(0, g.edge_index.shape[1], 37):
        q, p = g.edge_index[:, i].tolist()
        rot, _ = Rotation.align_vectors(g.normal[p][None].numpy(), g.normal[q][None].numpy())
        u = rot.apply(g.e1[q].numpy())
        ang = math.atan2(u @ g.e2[p].numpy(), u @ g.e1[p].numpy())
        assert abs(math.remainder(ang - float(g.transport[i]), 2 * math.pi)) < 1e-9


@pytest.mark.parametrize("dtype", DTYPES)
def test_gauge_independent_quantities_are_invariant_to_rigid_motion(dtype):
    pos, face = _bumpy_sphere(dtype)
    rot = torch.tensor(Rotation.random(random_state=3).as_matrix(), dtype=dtype)
    moved = 2.5 * pos @ rot.T + torch.tensor([3.0, -1.0, 2.0], dtype=dtype)
    g, h = mesh_geometry(pos, face), mesh_geometry(moved, face)
    assert torch.equal(g.edge_index, h.edge_index)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(2.5 * g.radius, h.radius, atol=tol, rtol=tol)
    torch.testing.assert_close(curvature_features(pos, face), curvature_features(moved, face),
                               atol=10 * tol, rtol=10 * tol)
    # angle differences between neighbours of a vertex do not depend on the gauge
    q, p = g.edge_index
    first = torch.zeros(pos.shape[0], dtype=torch.long).scatter_reduce(
        0, p, torch.arange(len(p)), "amin", include_self=False)
    dg = torch.remainder(g.theta - g.theta[first[p]], 2 * math.pi)
    dh = torch.remainder(h.theta - h.theta[first[p]], 2 * math.pi)
    diff = torch.remainder(dg - dh + math.pi, 2 * math.pi) - math.pi
    assert float(diff.abs().max()) < 10 * tol


def test_curvature_features_of_a_sphere():
    m = trimesh.creation.icosphere(subdivisions=4, radius=3.0)
    f = curvature_features(torch.tensor(m.vertices), torch.tensor(m.faces.T.copy()))
    torch.testing.assert_close(f[:, 0], torch.full_like(f[:, 0], -1.0), atol=0.01, rtol=0)
    # spread: area-weighted normals tilt slightly off the radius at irregular vertices
    assert float(f[:, 1].median()) < 0.05 and float(f[:, 1].max()) < 0.15


# --------------------------------------------------------------------------- robustness


def test_boundary_isolated_vertex_and_repeated_corner():
    pos, face = _grid(3)
    pos = torch.cat([pos, torch.tensor([[10.0, 10.0, 10.0]], dtype=pos.dtype)])  # isolated
    face = torch.cat([face, torch.tensor([[0], [0], [1]])], dim=1)  # repeated corner: no area
    g = mesh_geometry(pos, face)
    assert torch.equal(g.normal[-1], torch.tensor([0.0, 0.0, 1.0], dtype=pos.dtype))
    assert not bool((g.edge_index == pos.shape[0] - 1).any())
    assert not bool((g.edge_index[0] == g.edge_index[1]).any())
    for t in g:
        assert bool(torch.isfinite(t.double()).all())


def test_obtuse_and_non_manifold_edges_are_handled():
    pos = torch.tensor([[0, 0, 0], [1, 0, 0], [0.5, 0.05, 0], [0.5, -0.5, 0.5], [0.5, -0.5, -0.5]],
                       dtype=torch.float64)
    # edge (0, 1) has three faces; face 0 is very obtuse
    face = torch.tensor([[0, 1, 2], [1, 0, 3], [1, 0, 4]]).T
    g = mesh_geometry(pos, face)
    assert g.edge_index.shape[1] == 2 * 7
    assert bool(torch.isfinite(g.theta).all()) and bool(torch.isfinite(g.transport).all())


def test_coincident_vertices_lose_their_edge_but_nothing_is_nan():
    pos = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.float64)
    face = torch.tensor([[0, 1, 2], [3, 4, 2], [1, 4, 3]]).T  # 1 and 3 coincide
    g = mesh_geometry(pos, face)
    pairs = set(zip(g.edge_index[0].tolist(), g.edge_index[1].tolist()))
    assert (1, 3) not in pairs and (3, 1) not in pairs and (0, 1) in pairs
    assert bool(torch.isfinite(g.theta).all())


def test_inconsistent_orientation_names_the_faces():
    pos, face = _grid(3)
    face = face.clone()
    face[:, 1] = face[[0, 2, 1], 1]  # flip one triangle
    with pytest.raises(InvalidInputError, match=r"faces \d+ and \d+ .*inconsistent orientation"):
        mesh_edges(face, pos.shape[0])
    with pytest.raises(InvalidInputError, match="inconsistent orientation"):
        mesh_geometry(pos, face)


def test_bad_inputs_name_the_element():
    pos, face = _grid(3)
    bad = face.clone()
    bad[1, 5] = 99
    with pytest.raises(InvalidInputError, match=r"mesh.face\[:, 5\]"):
        mesh_geometry(pos, bad)
    with pytest.raises(InvalidInputError, match="mesh.face must have shape"):
        mesh_geometry(pos, face.T)
    with pytest.raises(InvalidInputError, match="integer"):
        mesh_geometry(pos, face.double())
    nan = pos.clone()
    nan[2, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="mesh.pos"):
        mesh_geometry(nan, face)
    with pytest.raises(InvalidInputError, match="empty"):
        mesh_geometry(pos[:0], face[:, :0])
    flat = torch.tensor([[0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=torch.float64)
    with pytest.raises(InvalidInputError, match="vertex 0 has no normal"):
        mesh_geometry(flat, torch.tensor([[0], [1], [2]]))


def test_a_large_mesh_is_fast_enough():
    m = trimesh.creation.icosphere(subdivisions=6)  # 40,962 vertices
    pos, face = torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces.T.copy())
    g = mesh_geometry(pos, face)
    assert g.edge_index.shape[1] == 2 * len(m.edges_unique)


def test_angular_weights_are_sectors():
    # centre 0 sees neighbours 1, 2, 3 at 0, pi/2 and pi: gaps pi/2, pi/2 and pi
    edge_index = torch.tensor([[2, 1, 3, 0], [0, 0, 0, 1]])
    theta = torch.tensor([math.pi / 2, 0.0, math.pi, 0.3], dtype=torch.float64)
    w = mesh_ops.angular_weights(theta, edge_index, 4)
    expected = [(math.pi / 2 + math.pi / 2) / (4 * math.pi), (math.pi / 2 + math.pi) / (4 * math.pi),
                (math.pi + math.pi / 2) / (4 * math.pi), 1.0]
    torch.testing.assert_close(w, torch.tensor(expected, dtype=torch.float64))
    # a regular fan gets equal weights, in any gauge and any edge order
    k = 7
    fan = torch.stack([torch.arange(1, k + 1), torch.zeros(k, dtype=torch.long)])
    angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k + 2.0
    perm = torch.randperm(k)
    torch.testing.assert_close(mesh_ops.angular_weights(angles[perm], fan[:, perm], k + 1),
                               torch.full((k,), 1 / k, dtype=torch.float64))
    assert mesh_ops.angular_weights(theta[:0], edge_index[:, :0], 4).shape == (0,)


def test_angular_weights_sum_to_one_on_a_mesh():
    m = trimesh.creation.icosphere(2)
    pos = torch.tensor(m.vertices * [1.0, 0.5, 0.8])
    g = mesh_ops.mesh_geometry(pos, torch.tensor(m.faces.T.copy()))
    w = mesh_ops.angular_weights(g.theta, g.edge_index, pos.shape[0])
    total = torch.zeros(pos.shape[0], dtype=w.dtype).index_add_(0, g.edge_index[1], w)
    torch.testing.assert_close(total, torch.ones_like(total))
    assert float(w.min()) > 0
