"""Pure geometry on torch tensors: neighbours, oriented boxes, validation."""

from geo3d.geometry.boxes import *  # noqa: F401,F403
from geo3d.geometry.neighbors import *  # noqa: F401,F403
from geo3d.geometry import boxes, neighbors, validation

__all__ = neighbors.__all__ + boxes.__all__ + ["boxes", "neighbors", "validation"]
from geo3d.geometry import mesh  # noqa: E402  (normals, gauges, log map, transport)
__all__ += mesh.__all__ + ["mesh"]
from geo3d.geometry.mesh import *  # noqa: E402,F401,F403
