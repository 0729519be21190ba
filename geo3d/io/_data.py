"""Between a ``Data``'s feature matrix ``x`` and named per-point attributes.

Readers turn a file's per-point attributes (Open3D's names: ``intensity``, ``colors``,
``normals``, anything else) into the columns of ``x`` and list the column names in
``data.x_names``; writers do the reverse. Column order is canonical:

    intensity, red, green, blue, nx, ny, nz, then any other attribute in name order

(each present one only; an attribute of width k > 1 other than colours/normals becomes the
columns ``name_0 .. name_{k-1}``). Colours are floats in [0, 1]. ``x`` without
``x_names`` is written as columns ``feat_0 .. feat_{F-1}``.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_index, check_points

INTENSITY = "intensity"
GROUPS: dict[str, tuple[str, str, str]] = {"colors": ("red", "green", "blue"), "normals": ("nx", "ny", "nz")}
# Names Open3D gives a meaning of its own (PLY/PCD readers) or uses for grouped attributes.
_RESERVED = {"x", "y", "z", "positions", "colors", "normals", "rgb", "rgba", "normal_x", "normal_y", "normal_z"}
_COLOR_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}  # integer colours


def check_feature_names(names: object, width: int, name: str) -> list[str]:
    """Check ``width`` unique attribute-like column names (letters, digits, underscore)."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InvalidInputError(f"{name} must be a list of str, got {names!r}")
    if len(names) != width:
        raise InvalidInputError(f"{name} has {len(names)} names but x has {width} columns")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"{name} has duplicate names: {list(names)}")
    for n in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) or n in _RESERVED:
            raise InvalidInputError(
                f"{name} entry {n!r} is not a valid attribute name (letters, digits, '_'; "
                f"not one of {sorted(_RESERVED)})"
            )
    for group, members in GROUPS.items():
        present = [m for m in members if m in names]
        if present and len(present) != 3:
            raise InvalidInputError(f"{name} has {present} but {group} need all of {list(members)}")
    return list(names)


def check_cloud(data: object, name: str = "data") -> tuple[np.ndarray, Optional[np.ndarray], list[str]]:
    """Validate a point cloud ``Data`` for writing or converting.

    Returns:
        ``(pos, x, names)``: float32 arrays ``[N, 3]`` and ``[N, F]`` (or None) and the
        ``F`` column names.
    """
    if not isinstance(data, Data):
        raise InvalidInputError(f"{name} must be a torch_geometric Data, got {type(data).__name__}")
    pos = check_points(data.pos, f"{name}.pos")
    x = getattr(data, "x", None)
    if x is None:
        return float32_array(pos, f"{name}.pos"), None, []
    check_points(x, f"{name}.x", dim=None)
    if x.shape[0] != pos.shape[0]:
        raise InvalidInputError(f"{name}.x has {x.shape[0]} rows but {name}.pos has {pos.shape[0]}")
    names = getattr(data, "x_names", None)
    if names is None:
        names = [f"feat_{i}" for i in range(x.shape[1])]
    names = check_feature_names(names, x.shape[1], f"{name}.x_names")
    xs = float32_array(x, f"{name}.x")
    for c in GROUPS["colors"]:
        if c in names:
            col = xs[:, names.index(c)]
            if col.size and (col.min() < 0 or col.max() > 1):
                raise InvalidInputError(f"{name}.x column {c!r} must hold colours in [0, 1]")
    return float32_array(pos, f"{name}.pos"), xs, names


def check_faces(face: object, num_vertices: int, name: str) -> np.ndarray:
    """Check a ``[3, T]`` integer face tensor indexing ``num_vertices``; return ``[T, 3]`` int64."""
    if not isinstance(face, torch.Tensor) or face.dim() != 2 or face.shape[0] != 3:
        shape = list(face.shape) if isinstance(face, torch.Tensor) else type(face).__name__
        raise InvalidInputError(f"{name} must be a [3, T] integer tensor, got {shape}")
    check_index(face.reshape(-1), name)
    if face.numel() and (int(face.min()) < 0 or int(face.max()) >= num_vertices):
        raise InvalidInputError(
            f"{name} indexes vertices {int(face.min())}..{int(face.max())} but there are "
            f"{num_vertices} vertices"
        )
    return face.detach().cpu().numpy().T.astype(np.int64)


def float32_array(t: torch.Tensor, name: str) -> np.ndarray:
    """A tensor as a float32 numpy array, raising if a value does not fit float32."""
    with np.errstate(over="ignore"):
        out = t.detach().cpu().numpy().astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise InvalidInputError(f"{name} holds values too large for float32")
    return out


def attributes_from_x(x: Optional[np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Split ``x`` columns into named ``[N, k]`` float32 attributes (colours and normals grouped)."""
    if x is None:
        return {}
    columns = {n: x[:, i] for i, n in enumerate(names)}
    out = {}
    for group, members in GROUPS.items():
        if members[0] in columns:
            out[group] = np.stack([columns.pop(m) for m in members], axis=1)
    for n, col in columns.items():
        out[n] = col[:, None]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def x_from_attributes(attributes: Mapping[str, np.ndarray]) -> tuple[Optional[torch.Tensor], list[str]]:
    """Stack named per-point attributes into ``(x, x_names)`` in canonical order.

    ``colors`` of integer type are scaled to [0, 1]; ``positions`` is ignored.
    """
    cols: list[np.ndarray] = []
    names: list[str] = []
    rest = sorted(k for k in attributes if k not in ("positions", INTENSITY, *GROUPS))
    for key in (INTENSITY, *GROUPS, *rest):
        if key not in attributes:
            continue
        value = np.asarray(attributes[key])
        value = value.reshape(len(value), -1)
        if key == "colors":
            value = value.astype(np.float32) / np.float32(_COLOR_SCALE.get(value.dtype, 1.0))
        cols.append(value.astype(np.float32))
        if key in GROUPS:
            names += GROUPS[key]
        elif value.shape[1] == 1:
            names.append(key)
        else:
            names += [f"{key}_{i}" for i in range(value.shape[1])]
    if not cols:
        return None, []
    return torch.from_numpy(np.concatenate(cols, axis=1)), names
