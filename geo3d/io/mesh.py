"""Read and write triangle meshes (PLY, OFF, OBJ, STL) as ``Data(pos, face)``.

trimesh parses and writes the files, always with ``process=False`` so that vertices are
neither merged nor reordered (OBJ is read with ``maintain_order=True``; an OBJ with
per-corner normals or texture coordinates may still have its vertices split, and
vertices no face uses are dropped). Polygons are split into triangles.

STL stores a separate copy of each triangle's three corners. Reading an STL merges
corners with exactly equal coordinates into one vertex (numbered in order of first use),
so the mesh comes back connected; the vertex order of the mesh that was written is lost,
the triangles are not.

We check what trimesh does not: a binary STL's size against its triangle count and an
ASCII STL's closing ``endsolid`` line (trimesh returns an empty mesh from a truncated or
garbage STL), an OFF body against its header counts and OBJ lines cut short (trimesh
drops such faces silently), and on every format that there is at least one triangle,
that coordinates are finite, and that faces index existing vertices. OBJ has no element
counts, so an OBJ cut exactly at a line break cannot be told from a smaller mesh.

Binary PLY and STL round trips keep float32 coordinates exactly; OBJ and OFF are text,
written with 12 decimals.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Optional, Union

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.geometry.validation import check_points
from geo3d.io._data import check_faces, float32_array
from geo3d.io._formats import check_readable, mesh_format
from geo3d.io.atomic import atomic_write_bytes

__all__ = ["read_mesh", "write_mesh"]

PathLike = Union[str, "os.PathLike[str]"]
_DIGITS = 12


def read_mesh(path: PathLike, format: Optional[str] = None) -> Data:
    """Read a triangle mesh file into ``Data(pos, face)``.

    Args:
        path: The file.
        format: One of ``ply, off, obj, stl``. Default None: from the extension.

    Returns:
        ``Data(pos, face)``.

    Shapes:
        pos: ``[V, 3]`` float32; face: ``[3, T]`` long, ``T >= 1``.

    Raises:
        FileFormatError: Missing, empty, truncated or corrupt file, a file without
            triangles, non-finite coordinates, faces indexing missing vertices, or an
            unknown format.
    """
    import trimesh

    fmt = mesh_format(path, format)
    size = check_readable(path)
    if fmt in _CHECKS:
        _CHECKS[fmt](path, size)
    options = {"maintain_order": True} if fmt == "obj" else {}
    try:
        mesh = trimesh.load(str(path), file_type=fmt, process=False, force="mesh", **options)
    except Exception as err:  # trimesh's parsers raise many types on corrupt input
        raise FileFormatError(f"{fmt} file {str(path)!r} is corrupt or truncated: {err}") from None
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    vertices = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
    if len(faces) == 0:
        raise FileFormatError(f"{fmt} file {str(path)!r} holds no triangles (corrupt, or not a mesh)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise FileFormatError(
            f"{fmt} file {str(path)!r} has faces indexing vertices {faces.min()}..{faces.max()} "
            f"but only {len(vertices)} vertices"
        )
    pos = vertices.astype(np.float32)
    if not np.isfinite(pos).all():
        raise FileFormatError(f"{fmt} file {str(path)!r} holds NaN/Inf vertex coordinates")
    if fmt == "stl":
        pos, faces = _merge_corners(pos, faces)
    return Data(pos=torch.from_numpy(pos), face=torch.from_numpy(faces.T.copy()))


def write_mesh(data: Data, path: PathLike, format: Optional[str] = None) -> None:
    """Write ``Data(pos, face)`` to a mesh file atomically.

    PLY and STL are written binary, OBJ and OFF as text with 12 decimals. Only
    positions and triangles are written.

    Args:
        data: ``Data`` with ``pos`` ``[V, 3]`` and ``face`` ``[3, T]``, ``T >= 1``.
        path: The file to create or replace.
        format: One of ``ply, off, obj, stl``. Default None: from the extension.

    Raises:
        InvalidInputError: Bad shapes or dtypes, NaN/Inf, no faces, or faces indexing
            missing vertices.
        FileFormatError: Unknown format or a missing folder.
    """
    import trimesh
    from trimesh.exchange import obj, off, ply, stl

    fmt = mesh_format(path, format)
    if not isinstance(data, Data):
        raise InvalidInputError(f"data must be a torch_geometric Data, got {type(data).__name__}")
    pos = check_points(data.pos, "data.pos", allow_empty=False)
    faces = check_faces(getattr(data, "face", None), pos.shape[0], "data.face")
    if len(faces) == 0:
        raise InvalidInputError("data.face is empty: a mesh file needs at least one triangle")
    vertices = float32_array(pos, "data.pos").astype(np.float64)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if fmt == "ply":
        blob = ply.export_ply(mesh, encoding="binary", vertex_normal=False, include_attributes=False)
    elif fmt == "stl":
        blob = stl.export_stl(mesh)
    elif fmt == "off":
        blob = off.export_off(mesh, digits=_DIGITS)
    else:
        blob = obj.export_obj(
            mesh, include_normals=False, include_color=False, include_texture=False,
            write_texture=False, digits=_DIGITS,
        )  # fmt: skip
    atomic_write_bytes(path, blob.encode("ascii") if isinstance(blob, str) else blob)


def _check_stl(path: PathLike, size: int) -> None:
    with open(path, "rb") as fh:
        head = fh.read(84)
        fh.seek(max(0, size - 512))
        tail = fh.read()
    count = struct.unpack("<I", head[80:84])[0] if size >= 84 else -1
    if size == 84 + 50 * count:
        return  # binary STL of the promised size
    if head.lstrip().lower().startswith(b"solid"):
        lines = [line.strip().lower() for line in tail.splitlines() if line.strip()]
        if lines and lines[-1].startswith(b"endsolid"):
            return
        raise FileFormatError(f"ASCII STL file {str(path)!r} does not end with 'endsolid': truncated")
    need = f", a binary STL of {count} triangles needs {84 + 50 * count}" if count >= 0 else ""
    raise FileFormatError(f"STL file {str(path)!r} is truncated or corrupt: {size} bytes{need}")


def _check_off(path: PathLike, size: int) -> None:
    """Check that an OFF file holds the vertex and face rows its header counts."""
    with open(path, "rb") as fh:
        rows = [r.split(b"#")[0].split() for r in fh.read().splitlines()]
    rows = [r for r in rows if r]
    head = re.match(rb"^([A-Z]*OFF)(\d*)$", rows[0][0]) if rows else None
    if head is None:
        raise FileFormatError(f"{str(path)!r} is not an OFF file: it does not start with 'OFF'")
    if head.group(2):  # ModelNet's merged header: "OFF490 518 0"
        rows[0] = [head.group(1), head.group(2), *rows[0][1:]]
    counts, start = (rows[0][1:], 1) if len(rows[0]) > 1 else ((rows[1] if len(rows) > 1 else []), 2)
    try:
        vertices, faces = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        raise FileFormatError(f"OFF file {str(path)!r} has no vertex and face counts") from None
    body = rows[start:]
    if len(body) < vertices + faces:
        raise FileFormatError(
            f"OFF file {str(path)!r} is truncated: its header counts {vertices} vertices and "
            f"{faces} faces, it holds {len(body)} rows"
        )
    for number, row in enumerate(body[vertices : vertices + faces]):
        if not row[0].isdigit() or len(row) < 1 + int(row[0]) or int(row[0]) < 3:
            raise FileFormatError(f"OFF file {str(path)!r}: face {number} is truncated or corrupt")


def _check_obj(path: PathLike, size: int) -> None:
    """Check that no OBJ face has fewer than 3 corners and no vertex fewer than 3 numbers."""
    with open(path, "rb") as fh:
        text = fh.read()
    short = re.search(rb"(?m)^[ \t]*(f|v)(?:[ \t]+\S+){0,2}[ \t]*\r?$", text)
    if short:
        line = text.count(b"\n", 0, short.start()) + 1
        raise FileFormatError(f"OBJ file {str(path)!r} line {line} is truncated: {short.group().strip()!r}")


def _merge_corners(pos: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices with equal coordinates, numbering them in order of first use."""
    used = pos[faces.reshape(-1)]
    unique, first, inverse = np.unique(used, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return unique[order], rank[inverse.reshape(-1)].reshape(-1, 3)


_CHECKS = {"stl": _check_stl, "off": _check_off, "obj": _check_obj}
