"""Per-point input features computed from a frame (plain torch) or a mesh.

``lidar_features`` gives PointNet++ and DGCNN what their first layer cannot see: those
layers look at relative positions only, so absolute height and range enter as features.
``mesh_features`` names the invariant vertex scalars that mesh datasets offer.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError

__all__ = ["lidar_features", "LIDAR_FEATURES", "mesh_features", "MESH_FEATURES"]

#: Names accepted by :func:`mesh_features` and their column counts.
MESH_FEATURES = {"curvature": 2, "hks": 16, "none": 0}

#: Column names of :func:`lidar_features`.
LIDAR_FEATURES = ("intensity", "z", "range_10m")


def lidar_features(data: Data) -> Data:
    """A copy of ``data`` with ``x`` = [intensity, z, horizontal range / 10 m].

    Args:
        data: a LiDAR frame with ``pos`` [N, 3] and ``x`` [N, 1] (intensity); other
            attributes are kept.

    Shapes:
        returned ``x``: [N, 3], the dtype of ``pos``.

    Raises:
        InvalidInputError: ``x`` missing or not one column per point.
    """
    x = getattr(data, "x", None)
    if x is None or x.dim() != 2 or x.shape != (data.pos.shape[0], 1):
        got = None if x is None else tuple(x.shape)
        raise InvalidInputError(f"lidar_features needs data.x = intensity [N, 1] for "
                                f"{data.pos.shape[0]} points, got {got}")
    rng = data.pos[:, :2].norm(dim=1, keepdim=True) / 10.0
    out = data.clone()
    out.x = torch.cat([x.to(data.pos.dtype), data.pos[:, 2:3], rng], dim=1)
    return out


def mesh_features(pos: torch.Tensor, face: torch.Tensor, features: str) -> torch.Tensor | None:
    """Rigid-motion- and gauge-invariant vertex scalars of one mesh, chosen by name.

    Args:
        pos: vertices ``[V, 3]``; face: triangles ``[3, T]`` long.
        features: ``"curvature"`` (:func:`geo3d.geometry.mesh.curvature_features`,
            ``[V, 2]``), ``"hks"`` (:func:`geo3d.geometry.spectral.heat_kernel_signature`,
            ``[V, 16]``) or ``"none"`` (returns None).
    """
    from geo3d.geometry.mesh import curvature_features
    from geo3d.geometry.spectral import heat_kernel_signature

    if features not in MESH_FEATURES:
        raise InvalidInputError(f"features must be one of {sorted(MESH_FEATURES)}, got {features!r}")
    if features == "curvature":
        return curvature_features(pos, face)
    if features == "hks":
        return heat_kernel_signature(pos, face, num_times=MESH_FEATURES["hks"])
    return None
