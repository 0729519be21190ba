"""``Scene``: named Open3D geometries with their materials, grouped into toggleable layers.

A scene is a plain, immutable value that the builders (:mod:`geo3d.viewers.builders`)
return and that both renderers (:func:`geo3d.viewers.render`, in :mod:`geo3d.viewers.offscreen`, and the
interactive app) put into an ``open3d.visualization.rendering.Open3DScene``. Scenes add up:
``points(data) + boxes(data.boxes)`` holds the layers and the legends of both.

Layer groups (the app's toggles): ``"points"``, ``"gt"`` (ground-truth boxes, hands),
``"predictions"``, ``"tracks"``, ``"mesh"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import open3d as o3d
from open3d.visualization import rendering

from geo3d.errors import InvalidInputError
from geo3d.viewers.palettes import Legend

__all__ = ["Material", "SceneLayer", "Scene", "GROUPS", "add_to_open3d"]

#: The layer groups the app offers toggles for, in panel order.
GROUPS = ("points", "gt", "predictions", "tracks", "mesh")
_SHADERS = ("defaultUnlit", "defaultLit", "unlitLine")


@dataclass(frozen=True)
class Material:
    """How a layer is drawn (a small, hashable stand-in for Open3D's ``MaterialRecord``).

    Args:
        shader: ``"defaultUnlit"`` (points, flat colours; default), ``"defaultLit"``
            (shaded meshes) or ``"unlitLine"`` (line sets with a width).
        point_size: point diameter in pixels (default 2).
        line_width: line width in pixels (default 2).
    """

    shader: str = "defaultUnlit"
    point_size: float = 2.0
    line_width: float = 2.0

    def __post_init__(self) -> None:
        if self.shader not in _SHADERS:
            raise InvalidInputError(f"shader must be one of {_SHADERS}, got {self.shader!r}")
        for name in ("point_size", "line_width"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise InvalidInputError(f"{name} must be a positive number, got {value!r}")

    def to_open3d(self) -> rendering.MaterialRecord:
        """The equivalent ``MaterialRecord``."""
        record = rendering.MaterialRecord()
        record.shader = self.shader
        record.point_size = float(self.point_size)
        record.line_width = float(self.line_width)
        return record


@dataclass(frozen=True)
class SceneLayer:
    """One named geometry of a scene.

    Args:
        name: unique name within the scene (e.g. ``"points"``, ``"gt_boxes"``).
        geometry: an ``open3d.geometry.PointCloud``, ``LineSet`` or ``TriangleMesh``.
        material: how it is drawn.
        group: its toggle group, one of :data:`GROUPS`.
    """

    name: str
    geometry: o3d.geometry.Geometry3D
    material: Material = Material()
    group: str = "points"

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise InvalidInputError(f"group must be one of {GROUPS}, got {self.group!r}")

    def vertices(self) -> np.ndarray:
        """The geometry's points / vertices as ``[P, 3]`` float64."""
        g = self.geometry
        if isinstance(g, o3d.geometry.TriangleMesh):
            return np.asarray(g.vertices)
        return np.asarray(g.points)


@dataclass(frozen=True)
class Scene:
    """Layers plus a legend (``(name, rgb)`` pairs).

    Args:
        layers: the geometries, drawn in order.
        legend: what the colours mean, e.g. ``(("car", (0.39, 0.59, 0.96)), ...)``.
        kind: ``"lidar"`` (a street scene: default camera bird's-eye) or ``"object"`` (a
            mesh, a hand, a shape: default camera an oblique view).
    """

    layers: tuple[SceneLayer, ...] = ()
    legend: Legend = ()
    kind: str = "lidar"
    title: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"layer names must be unique, got {names}")
        if self.kind not in ("lidar", "object"):
            raise InvalidInputError(f"kind must be 'lidar' or 'object', got {self.kind!r}")

    def __add__(self, other: "Scene") -> "Scene":
        """Both scenes' layers; legends merged (first colour of a name wins); the kind of
        the first scene that has layers."""
        legend = dict(self.legend)
        for name, rgb in other.legend:
            legend.setdefault(name, rgb)
        kind = self.kind if self.layers else other.kind
        return Scene(self.layers + other.layers, tuple(legend.items()), kind,
                     self.title or other.title)

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups present, in :data:`GROUPS` order."""
        present = {layer.group for layer in self.layers}
        return tuple(g for g in GROUPS if g in present)

    def only(self, groups: Iterable[str]) -> "Scene":
        """The scene with the layers of ``groups`` only."""
        keep = set(groups)
        return Scene(tuple(l for l in self.layers if l.group in keep), self.legend, self.kind,
                     self.title)

    def bounds(self, robust: bool = True) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """``(lo, hi)`` corners of the box holding the layers' points; ``None`` if empty.

        Args:
            robust: use the 1st / 99th percentiles of the point layers when they hold
                more than 1,000 points (a LiDAR scan's few far returns would otherwise
                make everything small); lines and meshes always count in full.
        """
        parts = []
        for layer in self.layers:
            v = layer.vertices()
            if not len(v):
                continue
            if robust and isinstance(layer.geometry, o3d.geometry.PointCloud) and len(v) > 1000:
                v = np.percentile(v, [1, 99], axis=0)
            parts.append(v)
        if not parts:
            return None
        allv = np.concatenate(parts)
        return allv.min(0), allv.max(0)


def add_to_open3d(target: rendering.Open3DScene, scene: Scene,
                  groups: Optional[Iterable[str]] = None, thin_lines: bool = False) -> None:
    """Add the layers of ``scene`` (of ``groups`` only, if given) to an ``Open3DScene``.

    Empty geometries are skipped (Filament rejects them). ``thin_lines`` draws line sets
    one pixel wide (``defaultUnlit``): Open3D 0.20's wide-line shader drops most of a
    line under an orthographic camera.
    """
    keep = None if groups is None else set(groups)
    for layer in scene.layers:
        if keep is not None and layer.group not in keep:
            continue
        if not len(layer.vertices()):
            continue
        material = layer.material.to_open3d()
        if thin_lines and material.shader == "unlitLine":
            material.shader = "defaultUnlit"
        target.add_geometry(layer.name, layer.geometry, material)
