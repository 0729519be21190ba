"""Spectral mesh descriptors: the intrinsic Laplacian and the heat kernel signature (HKS).

The Laplacian comes from ``robust_laplacian`` (Sharp and Crane, "A Laplacian for
Nonmanifold Triangle Meshes", SGP 2020): the cotangent Laplacian of the intrinsic Delaunay
triangulation of the mesh's tangent-space "tufted cover". It is well defined on
non-manifold edges, degenerate and obtuse faces, and it depends much less on how a
surface is triangulated than the plain cotangent Laplacian, which is why mesh networks
use it for inputs that must survive re-meshing. The eigenpairs come from
``scipy.sparse.linalg.eigsh`` (shift-invert). Only the HKS formula is written here.

HKS (Sun, Ovsjanikov and Guibas, "A Concise and Provably Informative Multi-Scale
Signature Based on Heat Diffusion", SGP 2009): ``h_t(x) = sum_i exp(-lambda_i t)
phi_i(x)^2`` for ``M``-orthonormal eigenfunctions ``phi_i``. It is invariant to
isometric deformation (pose), rigid motion and the sign of the eigenvectors. Here the
times are log-spaced between ``4 ln 10 / lambda_k`` and ``4 ln 10 / lambda_1`` (the
paper's choice, ``lambda_1`` the first non-zero eigenvalue), the spectrum is that of the
mesh scaled to unit area, and each column is divided by its area-weighted mean
``sum_i exp(-lambda_i t)`` ("scaled HKS") and its logarithm taken. So the result does
not depend on the mesh's scale.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh
from torch import Tensor

from geo3d.errors import InvalidInputError
from geo3d.geometry.mesh import check_mesh

__all__ = ["mesh_laplacian", "laplacian_eigenpairs", "heat_kernel_signature"]

_MIN_VERTICES = 4
_MASS_FLOOR = 1e-12  # relative mass given to vertices on no face, so M stays invertible


def mesh_laplacian(pos: Tensor, face: Tensor, name: str = "mesh") -> tuple[sp.csc_matrix, sp.csc_matrix]:
    """Robust intrinsic cotangent Laplacian ``L`` (positive semi-definite) and lumped mass ``M``.

    Args:
        pos: vertex positions ``[V, 3]`` float.
        face: triangles ``[3, T]`` long.
        name: how error messages call the mesh.

    Returns:
        ``(L, M)``: scipy CSC ``[V, V]`` float64. A vertex on no face has a zero row in
        ``L`` and a tiny positive mass, so it only adds a zero eigenvalue.
    """
    check_mesh(pos, face, name)
    if face.shape[1] == 0:
        raise InvalidInputError(f"{name}.face is empty: the Laplacian needs at least one triangle")
    import robust_laplacian

    verts = pos.detach().cpu().double().numpy()
    faces = face.detach().cpu().T.numpy().astype(np.int64)
    scale = float(np.ptp(verts, axis=0).max()) or 1.0
    L, M = robust_laplacian.mesh_laplacian(np.ascontiguousarray(verts / scale), np.ascontiguousarray(faces))
    mass = M.diagonal()
    if not (np.isfinite(L.data).all() and np.isfinite(mass).all()):
        raise InvalidInputError(f"{name}: the Laplacian is not finite (degenerate geometry)")
    mass = np.maximum(mass, _MASS_FLOOR * max(float(mass.mean()), _MASS_FLOOR))
    # computed on the mesh scaled to unit size (robust_laplacian's tolerances are absolute)
    return sp.csc_matrix(L), sp.diags(mass * scale**2, format="csc")


def laplacian_eigenpairs(pos: Tensor, face: Tensor, k: int, name: str = "mesh"
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenpairs of ``L phi = lambda M phi`` on the mesh scaled to unit area.

    The mass matrix is divided by the total area, so eigenvalues and eigenfunctions do not
    depend on the mesh's scale; ``phi`` is orthonormal under that mass.

    Args:
        pos, face: the mesh (see :func:`mesh_laplacian`).
        k: eigenpairs wanted; at most ``V - 1`` are returned.

    Returns:
        ``(lambda [k'], phi [V, k'])`` float64, ascending, ``k' = min(k, V - 1)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise InvalidInputError(f"k must be an int >= 2, got {k!r}")
    if pos.shape[0] < _MIN_VERTICES:
        raise InvalidInputError(f"{name} has {pos.shape[0]} vertices; spectral features need "
                                f"at least {_MIN_VERTICES}")
    L, M = mesh_laplacian(pos, face, name)
    M = M / M.diagonal().sum()
    k = min(k, L.shape[0] - 1)
    # shift-invert just below 0: L is only semi-definite, so sigma = 0 would be singular
    sigma = -1e-8 * float(L.diagonal().mean() / M.diagonal().mean())
    try:
        lam, phi = eigsh(L, k=k, M=M, sigma=sigma, which="LM")
    except (ArpackError, ArpackNoConvergence, RuntimeError) as err:
        raise InvalidInputError(f"{name}: the Laplacian eigenproblem failed ({err})") from None
    order = np.argsort(lam)
    return np.clip(lam[order], 0.0, None), phi[:, order]


def heat_kernel_signature(pos: Tensor, face: Tensor, num_times: int = 16, num_eigs: int = 64,
                          name: str = "mesh") -> Tensor:
    """Scaled log heat kernel signature per vertex, ``[V, num_times]`` (see the module doc).

    Invariant to rigid motion, uniform scale, isometric deformation and (closely, through
    the robust Laplacian) re-triangulation. Pass one mesh, not a batch: the times follow
    the mesh's own spectrum.

    Args:
        pos: vertex positions ``[V, 3]`` float (``V >= 4``).
        face: triangles ``[3, T]`` long.
        num_times: diffusion times (columns), default 16.
        num_eigs: eigenpairs summed, default 64 (fewer on meshes with fewer vertices).
        name: how error messages call the mesh.

    Returns:
        ``[V, num_times]`` in ``pos.dtype``. Columns run from small times (local
        geometry) to large times (position in the whole shape).
    """
    if isinstance(num_times, bool) or not isinstance(num_times, int) or num_times < 1:
        raise InvalidInputError(f"num_times must be an int >= 1, got {num_times!r}")
    lam, phi = laplacian_eigenpairs(pos, face, num_eigs, name)
    positive = lam > 1e-9 * lam[-1]
    if not positive.any():
        raise InvalidInputError(f"{name}: the Laplacian has no positive eigenvalue (no area)")
    lo, hi = float(lam[positive][0]), float(lam[-1])
    times = np.geomspace(4 * math.log(10) / hi, 4 * math.log(10) / lo, num_times)
    decay = np.exp(-np.outer(lam, times))  # [k, num_times]
    hks = (phi**2) @ decay / decay.sum(0)
    return torch.from_numpy(np.log(np.maximum(hks, 1e-30))).to(pos.dtype)
