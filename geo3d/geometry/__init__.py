"""Pure geometry on torch tensors: neighbours, oriented boxes, validation."""

from geo3d.geometry.boxes import *  # noqa: F401,F403
from geo3d.geometry.neighbors import *  # noqa: F401,F403
from geo3d.geometry import boxes, neighbors, validation

__all__ = neighbors.__all__ + boxes.__all__ + ["boxes", "neighbors", "validation"]
