"""Fast mesh assembly for the procedural asset builders.

Parts are plain ``(vertices, faces)`` numpy pairs made by transforming unit templates that
trimesh builds once (cached), and one ``trimesh.Trimesh`` is created per asset at the end.
Creating a Trimesh per primitive costs about 1 ms each, which would dominate a frame.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import trimesh

Part = tuple[np.ndarray, np.ndarray]


@lru_cache(maxsize=None)
def _unit_cylinder(sections: int) -> Part:
    m = trimesh.creation.cylinder(radius=1.0, height=1.0, sections=sections)
    return np.asarray(m.vertices), np.asarray(m.faces)


@lru_cache(maxsize=None)
def _unit_sphere(subdivisions: int) -> Part:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    return np.asarray(m.vertices), np.asarray(m.faces)


@lru_cache(maxsize=None)
def _unit_box() -> Part:
    m = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    return np.asarray(m.vertices), np.asarray(m.faces)


def _frame_along(direction: np.ndarray) -> np.ndarray:
    """A rotation whose third column is the unit vector ``direction``."""
    d = direction / max(float(np.linalg.norm(direction)), 1e-12)
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(helper, d)
    a /= np.linalg.norm(a)
    return np.stack([a, np.cross(d, a), d], axis=1)


def box(extents, center=(0.0, 0.0, 0.0), rot=None) -> Part:
    """An axis-aligned (or ``rot``-rotated) box of ``extents`` centred at ``center``."""
    v, f = _unit_box()
    v = v * np.asarray(extents, float)
    if rot is not None:
        v = v @ np.asarray(rot).T
    return v + np.asarray(center, float), f


def sphere(center, radius, subdivisions: int = 1, scale=(1.0, 1.0, 1.0)) -> Part:
    """An icosphere (optionally an ellipsoid through ``scale``) at ``center``."""
    v, f = _unit_sphere(subdivisions)
    return v * radius * np.asarray(scale, float) + np.asarray(center, float), f


def rod(p0, p1, radius: float, sections: int = 8) -> Part:
    """A capped cylinder of ``radius`` from point ``p0`` to point ``p1``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    v, f = _unit_cylinder(sections)
    v = v * np.array([radius, radius, max(float(np.linalg.norm(axis)), 1e-6)])
    return v @ _frame_along(axis).T + (p0 + p1) / 2, f


def limb(p0, p1, radius: float) -> list[Part]:
    """A capsule: a rod with a sphere at each end."""
    return [rod(p0, p1, radius), sphere(p0, radius, 0), sphere(p1, radius, 0)]


def transform(part: Part, rot=None, offset=(0.0, 0.0, 0.0)) -> Part:
    """Rotate a part by the 3x3 ``rot`` (if given), then translate it by ``offset``."""
    v, f = part
    if rot is not None:
        v = v @ np.asarray(rot).T
    return v + np.asarray(offset, float), f


def merge(parts: list[Part]) -> trimesh.Trimesh:
    """Concatenate parts into one mesh (vertices are not merged)."""
    offsets = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
    verts = np.concatenate([v for v, _ in parts])
    faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets)])
    return trimesh.Trimesh(verts, faces, process=False)


def to_local_frame(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Translate so the bounds are centred at the origin in x, y and the bottom is at z=0."""
    lo, hi = mesh.bounds
    shift = np.array([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
    return trimesh.Trimesh(mesh.vertices + shift, mesh.faces, process=False)


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
