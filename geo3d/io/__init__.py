"""Reading and writing point clouds and meshes, and converting to Open3D and trimesh.

Point clouds: PLY, PCD, XYZ, and the binary scan formats of KITTI, nuScenes, ScanNet and
SemanticKITTI (see :mod:`geo3d.io.point_cloud` for the ``x`` column layout of each).
Meshes: PLY, OFF, OBJ, STL. Every reader raises :class:`geo3d.errors.FileFormatError`
naming the path on a missing, empty, truncated or corrupt file; every writer validates its
input (:class:`geo3d.errors.InvalidInputError`) and writes atomically.
"""

from geo3d.io.atomic import atomic_write, atomic_write_bytes
from geo3d.io.convert import from_open3d, from_trimesh, to_open3d, to_trimesh
from geo3d.io.labels import read_labels, write_labels
from geo3d.io.mesh import read_mesh, write_mesh
from geo3d.io.point_cloud import label_path, read_point_cloud, write_point_cloud

__all__ = [
    "read_point_cloud",
    "write_point_cloud",
    "read_labels",
    "write_labels",
    "label_path",
    "read_mesh",
    "write_mesh",
    "from_open3d",
    "to_open3d",
    "from_trimesh",
    "to_trimesh",
    "atomic_write",
    "atomic_write_bytes",
]
