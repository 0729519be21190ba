"""Spectral descriptors: the robust Laplacian's spectrum, HKS invariances, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from geo3d.errors import InvalidInputError
from geo3d.geometry.spectral import heat_kernel_signature, laplacian_eigenpairs, mesh_laplacian
from geo3d.sim.humanoid import humanoid_template, pose_humanoid, retriangulate


def _mesh(m: trimesh.Trimesh, dtype=torch.float64):
    return torch.tensor(m.vertices, dtype=dtype), torch.tensor(m.faces.T.copy(), dtype=torch.long)


def test_sphere_spectrum_matches_the_analytic_one():
    # unit-area sphere: R^2 = 1 / (4 pi), lambda_l = l (l + 1) / R^2 with multiplicity 2l + 1
    pos, face = _mesh(trimesh.creation.icosphere(4))
    lam, phi = laplacian_eigenpairs(pos, face, k=9)
    expected = [4 * math.pi * l * (l + 1) for l in (0, 1, 1, 1, 2, 2, 2, 2, 2)]
    np.testing.assert_allclose(lam, expected, rtol=0.01, atol=1e-6)
    _, M = mesh_laplacian(pos, face)
    gram = phi.T @ (M / M.diagonal().sum()) @ phi
    np.testing.assert_allclose(gram, np.eye(9), atol=1e-8)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-8), (torch.float32, 1e-3)])
def test_hks_is_invariant_to_rigid_motion_and_scale(dtype, tol):
    ellipsoid = trimesh.creation.icosphere(3)
    ellipsoid.vertices *= [1.0, 0.6, 0.4]
    pos, face = _mesh(ellipsoid, dtype)
    h = heat_kernel_signature(pos, face, num_times=8)
    assert h.shape == (pos.shape[0], 8) and h.dtype == dtype
    rot = torch.tensor(trimesh.transformations.random_rotation_matrix()[:3, :3], dtype=dtype)
    moved = 2.5 * pos @ rot.T + torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
    torch.testing.assert_close(heat_kernel_signature(moved, face, num_times=8), h, atol=tol, rtol=tol)
    assert float(h.std(0).max()) > 0.05  # not constant: the ends differ from the waist


def test_hks_is_constant_on_a_sphere_and_varies_on_a_body():
    pos, face = _mesh(trimesh.creation.icosphere(3))
    assert float(heat_kernel_signature(pos, face).abs().max()) < 0.05  # scaled HKS: 1 = exp(0)


def test_hks_survives_retriangulation_better_than_pose_changes_it():
    t = humanoid_template()
    a = pose_humanoid(np.random.default_rng(0), 1.0, 0.01, t)
    b = pose_humanoid(np.random.default_rng(1), 1.0, 0.01, t)
    c, faces_c, nearest = retriangulate(b, t.faces, seed=0)

    def hks(v, f):
        return heat_kernel_signature(torch.tensor(v), torch.tensor(f.T.copy())).numpy()

    ha, hb, hc = hks(a, t.faces), hks(b, t.faces), hks(c, faces_c)
    pose_change = np.abs(ha - hb).mean()
    retriangulation = np.abs(hb[nearest] - hc).mean()
    assert retriangulation < 1.5 * pose_change < 0.5 * ha.std(0).mean()


def test_awkward_meshes_give_finite_features():
    pos, face = _mesh(trimesh.creation.icosphere(2))
    n = pos.shape[0]
    cases = {
        "isolated vertex": (torch.cat([pos, pos.new_tensor([[5.0, 5.0, 5.0]])]), face),
        "degenerate face": (pos, torch.cat([face, torch.tensor([[0], [0], [1]])], 1)),
        "non-manifold fin": (torch.cat([pos, pos.new_tensor([[2.0, 2.0, 2.0]])]),
                             torch.cat([face, torch.tensor([[int(face[0, 0])], [int(face[1, 0])], [n]])], 1)),
        "two components": (torch.cat([pos, pos + 5]), torch.cat([face, face + n], 1)),
        "open boundary": (pos, face[:, face.shape[1] // 4:]),
    }
    for what, (p, f) in cases.items():
        h = heat_kernel_signature(p, f)
        assert h.shape == (p.shape[0], 16) and bool(torch.isfinite(h).all()), what


def test_bad_input_is_named():
    pos, face = _mesh(trimesh.creation.icosphere(1))
    with pytest.raises(InvalidInputError, match="at least 4"):
        heat_kernel_signature(pos[:3], torch.tensor([[0], [1], [2]]))
    with pytest.raises(InvalidInputError, match="face is empty"):
        heat_kernel_signature(pos, torch.zeros(3, 0, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="pos"):
        heat_kernel_signature(torch.full_like(pos, float("nan")), face)
    with pytest.raises(InvalidInputError, match="outside"):
        heat_kernel_signature(pos, face + pos.shape[0])
    with pytest.raises(InvalidInputError, match="num_times"):
        heat_kernel_signature(pos, face, num_times=0)
    with pytest.raises(InvalidInputError, match="k must"):
        laplacian_eigenpairs(pos, face, k=1)
    with pytest.raises(InvalidInputError, match="degenerate|no positive"):
        heat_kernel_signature(torch.zeros(10, 3, dtype=torch.float64), torch.tensor([[0, 1], [1, 2], [2, 3]]))
