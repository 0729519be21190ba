"""Converters between ``Data`` and Open3D / trimesh geometry.

Per-point attributes follow the ``x`` column convention of :mod:`geo3d.io.point_cloud`
(``x_names``: ``intensity``, ``red, green, blue``, ``nx, ny, nz``, others by name).

Open3D: :func:`to_open3d` returns tensor geometry (``open3d.t.geometry``) by default,
which keeps float32 positions and every ``x`` column as a named attribute, and works with
``open3d.visualization.draw``, ``RaycastingScene`` and ``open3d.t.io``. ``legacy=True``
gives ``open3d.geometry`` objects (float64, only colours and normals kept) for the
legacy algorithms and ``draw_geometries``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.io._data import GROUPS, attributes_from_x, check_cloud, check_faces, x_from_attributes

__all__ = ["from_open3d", "to_open3d", "from_trimesh", "to_trimesh"]


def _make_data(pos: np.ndarray, name: str, faces: Any = None, attributes: Any = None) -> Data:
    pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3).astype(np.float32)
    if not np.isfinite(pos).all():
        raise InvalidInputError(f"{name} has NaN/Inf (or beyond float32) coordinates")
    data = Data(pos=torch.from_numpy(pos))
    if faces is not None:
        faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        if len(faces) and (faces.min() < 0 or faces.max() >= len(pos)):
            raise InvalidInputError(f"{name} has triangles indexing missing vertices")
        data.face = torch.from_numpy(faces.T.copy())
    attributes = attributes or {}
    for key, value in attributes.items():
        if len(value) != len(pos):
            raise InvalidInputError(f"{name} has {len(value)} {key} for {len(pos)} points")
    x, names = x_from_attributes(attributes)
    if x is not None:
        if not bool(torch.isfinite(x).all()):
            raise InvalidInputError(f"{name} has NaN/Inf per-point attributes")
        data.x, data.x_names = x, names
    return data


def from_open3d(geometry: Any) -> Data:
    """Convert an Open3D point cloud or triangle mesh to ``Data``.

    Accepts ``open3d.geometry.PointCloud``/``TriangleMesh`` and
    ``open3d.t.geometry.PointCloud``/``TriangleMesh``. Colours and normals (and, for
    tensor geometry, every other per-point/per-vertex attribute) become ``x`` columns.

    Args:
        geometry: The Open3D geometry.

    Returns:
        ``Data(pos, x, x_names)``, plus ``face`` for meshes.

    Shapes:
        pos: ``[N, 3]`` float32; x: ``[N, F]`` float32; face: ``[3, T]`` long.

    Raises:
        InvalidInputError: Another type, NaN/Inf values or faces indexing missing vertices.
    """
    import open3d as o3d

    name = f"geometry ({type(geometry).__name__})"
    if isinstance(geometry, o3d.geometry.PointCloud):
        attributes = {"colors": np.asarray(geometry.colors), "normals": np.asarray(geometry.normals)}
        return _make_data(np.asarray(geometry.points), name, None, _nonempty(attributes))
    if isinstance(geometry, o3d.geometry.TriangleMesh):
        attributes = {"colors": np.asarray(geometry.vertex_colors), "normals": np.asarray(geometry.vertex_normals)}
        return _make_data(np.asarray(geometry.vertices), name, np.asarray(geometry.triangles), _nonempty(attributes))
    if isinstance(geometry, o3d.t.geometry.PointCloud):
        attributes = {k: geometry.point[k].cpu().numpy() for k in geometry.point}
        return _make_data(attributes.pop("positions", np.zeros((0, 3))), name, None, attributes)
    if isinstance(geometry, o3d.t.geometry.TriangleMesh):
        attributes = {k: geometry.vertex[k].cpu().numpy() for k in geometry.vertex}
        faces = geometry.triangle["indices"].cpu().numpy() if "indices" in geometry.triangle else np.zeros((0, 3))
        return _make_data(attributes.pop("positions", np.zeros((0, 3))), name, faces, attributes)
    raise InvalidInputError(
        f"geometry must be an Open3D PointCloud or TriangleMesh (legacy or tensor), got {type(geometry).__name__}"
    )


def to_open3d(data: Data, legacy: bool = False) -> Any:
    """Convert ``Data`` to an Open3D point cloud, or a triangle mesh when ``face`` is set.

    Args:
        data: ``Data`` with ``pos``, optionally ``x``/``x_names`` and ``face``.
        legacy: Default False: ``open3d.t.geometry`` objects keeping every ``x`` column
            (float32). True: ``open3d.geometry`` objects (float64) keeping only colours
            and normals.

    Returns:
        ``PointCloud`` or ``TriangleMesh`` (tensor or legacy).

    Raises:
        InvalidInputError: Bad shapes, NaN/Inf, colours outside [0, 1], bad ``x_names``
            or faces indexing missing vertices.
    """
    import open3d as o3d

    pos, x, names = check_cloud(data)
    face = getattr(data, "face", None)
    faces = None if face is None else check_faces(face, len(pos), "data.face")
    attributes = attributes_from_x(x, names)
    if legacy:
        vec = o3d.utility.Vector3dVector
        if faces is None:
            geometry = o3d.geometry.PointCloud(vec(pos.astype(np.float64)))
            for key in GROUPS:
                if key in attributes:
                    setattr(geometry, key, vec(attributes[key].astype(np.float64)))
        else:
            triangles = o3d.utility.Vector3iVector(faces.astype(np.int32))
            geometry = o3d.geometry.TriangleMesh(vec(pos.astype(np.float64)), triangles)
            for key in GROUPS:
                if key in attributes:
                    setattr(geometry, f"vertex_{key}", vec(attributes[key].astype(np.float64)))
        return geometry
    tensor = o3d.core.Tensor
    if faces is None:
        geometry = o3d.t.geometry.PointCloud(tensor(pos))
        store = geometry.point
    else:
        geometry = o3d.t.geometry.TriangleMesh(tensor(pos), tensor(faces))
        store = geometry.vertex
    for key, value in attributes.items():
        store[key] = tensor(value)
    return geometry


def from_trimesh(geometry: Any) -> Data:
    """Convert a ``trimesh.Trimesh`` or ``trimesh.PointCloud`` to ``Data``.

    Per-vertex colours (when the mesh has vertex colours, or the point cloud colours) go
    to ``x`` as ``red, green, blue`` in [0, 1]; alpha is dropped.

    Args:
        geometry: The trimesh geometry.

    Returns:
        ``Data(pos, x, x_names)``, plus ``face`` for a ``Trimesh``.

    Raises:
        InvalidInputError: Another type, NaN/Inf or faces indexing missing vertices.
    """
    import trimesh

    name = f"geometry ({type(geometry).__name__})"
    if isinstance(geometry, trimesh.Trimesh):
        colors = None
        if geometry.visual.kind == "vertex":
            colors = np.asarray(geometry.visual.vertex_colors)
        return _make_data(geometry.vertices, name, geometry.faces, _color_attributes(colors))
    if isinstance(geometry, trimesh.PointCloud):
        colors = np.asarray(geometry.colors) if len(geometry.colors) else None
        return _make_data(geometry.vertices, name, None, _color_attributes(colors))
    raise InvalidInputError(f"geometry must be a trimesh Trimesh or PointCloud, got {type(geometry).__name__}")


def to_trimesh(data: Data) -> Any:
    """Convert ``Data`` to a ``trimesh.Trimesh`` (when ``face`` is set) or ``trimesh.PointCloud``.

    The mesh is built with ``process=False`` (no merging or reordering of vertices).
    Colours in ``x`` become vertex colours (8-bit); other ``x`` columns are dropped.

    Args:
        data: ``Data`` with ``pos``, optionally ``x``/``x_names`` and ``face``.

    Raises:
        InvalidInputError: Bad shapes, NaN/Inf, bad ``x_names`` or faces indexing
            missing vertices.
    """
    import trimesh

    pos, x, names = check_cloud(data)
    colors = attributes_from_x(x, names).get("colors")
    colors = None if colors is None else np.round(colors * 255).astype(np.uint8)
    face = getattr(data, "face", None)
    if face is None:
        return trimesh.PointCloud(pos.astype(np.float64), colors=colors)
    faces = check_faces(face, len(pos), "data.face")
    return trimesh.Trimesh(pos.astype(np.float64), faces, vertex_colors=colors, process=False)


def _nonempty(attributes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in attributes.items() if len(v)}


def _color_attributes(colors: Any) -> dict[str, np.ndarray]:
    if colors is None or len(colors) == 0:
        return {}
    return {"colors": np.asarray(colors)[:, :3]}
