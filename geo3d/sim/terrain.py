"""Procedural ground: a sloped, rough height field, and its exact height lookup.

The surface is a regular grid split into triangles along one diagonal; ``Terrain.height``
interpolates on those same triangles, so objects placed with it stand exactly on the mesh
the sensors see. numpy builds the grid; trimesh holds the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from geo3d.geometry.validation import check_positive
from geo3d.errors import InvalidInputError

__all__ = ["Terrain", "make_ground"]


@dataclass(frozen=True)
class Terrain:
    """A height field over ``[-extent/2, extent/2]^2``.

    Attributes:
        mesh: the triangulated surface, world frame, normals pointing up.
        heights: grid heights ``[n, n]``, ``heights[i, j]`` at ``(x_i, y_j)``.
        extent: side of the square in metres.
        spacing: grid spacing in metres.
    """

    mesh: trimesh.Trimesh
    heights: np.ndarray
    extent: float
    spacing: float

    def height(self, x, y) -> np.ndarray:
        """Surface height at ``(x, y)`` (arrays broadcast), interpolated on the triangles.

        Points outside the square are clamped to its border.
        """
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        n = self.heights.shape[0] - 1
        u = np.clip((x + self.extent / 2) / self.spacing, 0, n)
        v = np.clip((y + self.extent / 2) / self.spacing, 0, n)
        i = np.minimum(np.floor(u).astype(int), n - 1)
        j = np.minimum(np.floor(v).astype(int), n - 1)
        fu, fv = u - i, v - j
        h = self.heights
        z00, z10, z01, z11 = h[i, j], h[i + 1, j], h[i, j + 1], h[i + 1, j + 1]
        lower = fu >= fv  # triangle (00, 10, 11); else (00, 11, 01)
        return np.where(
            lower,
            z00 + fu * (z10 - z00) + fv * (z11 - z10),
            z00 + fv * (z01 - z00) + fu * (z11 - z01),
        )


def make_ground(
    rng: np.random.Generator,
    extent: float = 120.0,
    max_slope: float = 0.05,
    roughness: float = 0.05,
    spacing: float = 2.0,
) -> Terrain:
    """Make a ground height field with a random planar slope plus smooth bumps.

    Args:
        rng: random source.
        extent: side of the square in metres (default 120).
        max_slope: largest gradient of the planar tilt, rise over run (default 0.05).
        roughness: standard deviation of the bumps in metres (default 0.05).
        spacing: grid spacing in metres (default 2).
    """
    check_positive(extent, "extent")
    check_positive(spacing, "spacing")
    check_positive(max_slope, "max_slope", allow_zero=True)
    check_positive(roughness, "roughness", allow_zero=True)
    n = int(np.ceil(extent / spacing))
    if n < 1 or n > 4096:
        raise InvalidInputError(f"extent / spacing must give 1..4096 cells, got {n}")
    spacing = extent / n
    axis = np.linspace(-extent / 2, extent / 2, n + 1)
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    slope = rng.uniform(-max_slope, max_slope, size=2)
    bumps = np.zeros_like(gx)
    for _ in range(6):  # a few random plane waves of 8 to 40 m wavelength
        k = rng.normal(size=2)
        k *= 2 * np.pi / rng.uniform(8, 40) / np.linalg.norm(k)
        bumps += np.sin(gx * k[0] + gy * k[1] + rng.uniform(0, 2 * np.pi))
    bumps *= roughness / max(float(bumps.std()), 1e-9)
    heights = slope[0] * gx + slope[1] * gy + bumps
    heights -= heights[n // 2, n // 2]  # ground at z=0 under the origin
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    c, d = idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    verts = np.stack([gx.ravel(), gy.ravel(), heights.ravel()], 1)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    return Terrain(mesh=mesh, heights=heights, extent=float(extent), spacing=float(spacing))
