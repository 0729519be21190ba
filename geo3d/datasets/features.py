"""Per-point input features computed from a frame (plain torch).

``lidar_features`` gives PointNet++ and DGCNN what their first layer cannot see: those
layers look at relative positions only, so absolute height and range enter as features.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError

__all__ = ["lidar_features", "LIDAR_FEATURES"]

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
