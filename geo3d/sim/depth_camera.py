"""A pinhole depth camera (structured-light / Kinect-like) simulated by ray casting.

Rays are cast with Open3D's RaycastingScene through :meth:`geo3d.sim.scene.Scene.cast`; this
module adds the pinhole model, the depth range, depth noise growing with depth squared,
dropout and the loss of returns at grazing incidence.

Camera frame (OpenCV convention): x right, y down, z forward along the optical axis. Pixel
``(u, v)`` (column, row) has its centre at image coordinates ``(u, v)``, so the pixel
centre projects as ``u = fx * x / z + cx``, ``v = fy * y / z + cy``; the default principal
point is the image centre ``((width - 1) / 2, (height - 1) / 2)``.

Reference: Khoshelham & Elberink, "Accuracy and Resolution of Kinect Depth Data for Indoor
Mapping Applications", Sensors 2012 (depth error standard deviation grows as depth^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_positive
from geo3d.sim.lidar import _check_int, _check_probability
from geo3d.sim.scene import Scene, SeedLike, _as_generator, _check_transform

__all__ = ["DepthCamera", "DepthFrame"]


@dataclass(frozen=True, eq=False)
class DepthFrame:
    """One depth image and its valid pixels as a point cloud.

    Attributes:
        depth: z-depth along the optical axis in metres, 0 where invalid, float32 ``[H, W]``.
        label: semantic class per pixel, -1 where invalid, int64 ``[H, W]``.
        instance: instance id per pixel, -1 where invalid or background, int64 ``[H, W]``.
        points: valid pixels back-projected, camera frame (x right, y down, z forward),
            float32 ``[N, 3]``, in row-major pixel order.
        pixels: ``(u, v)`` = (column, row) of each point, int64 ``[N, 2]``.
        point_label: semantic class of each point, int64 ``[N]``.
        point_instance: instance id of each point, int64 ``[N]``.
    """

    depth: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    points: np.ndarray
    pixels: np.ndarray
    point_label: np.ndarray
    point_instance: np.ndarray


@dataclass(frozen=True)
class DepthCamera:
    """A pinhole depth camera.

    Args:
        width: image width in pixels (default 320).
        height: image height in pixels (default 240).
        fx: focal length in pixels along x (default 277.1: 60 degrees horizontal FOV).
        fy: focal length in pixels along y (default 277.1).
        cx: principal point x; None means ``(width - 1) / 2``.
        cy: principal point y; None means ``(height - 1) / 2``.
        min_depth: nearer surfaces give no depth, metres (default 0.2).
        max_depth: farther surfaces give no depth, metres (default 8.0).
        depth_noise: depth standard deviation is ``depth_noise * z**2``, 1/m
            (default 1.5e-3: 1.5 mm at 1 m, 3.7 cm at 5 m).
        dropout: probability that a valid pixel is lost at random (default 0.0).
        min_incidence_cos: pixels whose ray meets the surface with ``|cos| <`` this are
            invalid, as structured light loses grazing surfaces (default 0.05).

    Shapes:
        ``render(scene, pose, rng)`` returns a :class:`DepthFrame` with ``[H, W]`` images.
    """

    width: int = 320
    height: int = 240
    fx: float = 277.1
    fy: float = 277.1
    cx: Optional[float] = None
    cy: Optional[float] = None
    min_depth: float = 0.2
    max_depth: float = 8.0
    depth_noise: float = 1.5e-3
    dropout: float = 0.0
    min_incidence_cos: float = 0.05

    def __post_init__(self) -> None:
        _check_int(self.width, "width", 1)
        _check_int(self.height, "height", 1)
        check_positive(self.fx, "fx")
        check_positive(self.fy, "fy")
        for name, default in (("cx", (self.width - 1) / 2), ("cy", (self.height - 1) / 2)):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, float(default))
            elif not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInputError(f"{name} must be a finite number or None, got {value!r}")
        check_positive(self.min_depth, "min_depth", allow_zero=True)
        check_positive(self.max_depth, "max_depth")
        if self.min_depth >= self.max_depth:
            raise InvalidInputError(f"min_depth ({self.min_depth}) must be below max_depth "
                                    f"({self.max_depth})")
        check_positive(self.depth_noise, "depth_noise", allow_zero=True)
        _check_probability(self.dropout, "dropout")
        check_positive(self.min_incidence_cos, "min_incidence_cos", allow_zero=True)
        if self.min_incidence_cos >= 1:
            raise InvalidInputError(f"min_incidence_cos must be in [0, 1), got "
                                    f"{self.min_incidence_cos!r}")

    @classmethod
    def from_fov(cls, width: int = 320, height: int = 240, fov_x: float = 60.0,
                 **kwargs) -> "DepthCamera":
        """A camera with square pixels and horizontal field of view ``fov_x`` degrees."""
        if not isinstance(fov_x, (int, float)) or not 0 < fov_x < 180:
            raise InvalidInputError(f"fov_x must be in (0, 180) degrees, got {fov_x!r}")
        _check_int(width, "width", 1)
        f = width / 2 / math.tan(math.radians(fov_x) / 2)
        return cls(width=width, height=height, fx=f, fy=f, **kwargs)

    @property
    def intrinsics(self) -> np.ndarray:
        """The 3x3 camera matrix ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def pixel_rays(self) -> np.ndarray:
        """Ray directions through pixel centres with unit z, camera frame, ``[H, W, 3]``."""
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        return np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy,
                         np.ones(u.shape)], -1)

    def render(self, scene: Scene, pose: np.ndarray,
               rng: Optional[SeedLike] = None) -> DepthFrame:
        """Render a depth image of ``scene``.

        Args:
            scene: what to render.
            pose: world-from-camera rigid transform ``[4, 4]`` (camera axes x right,
                y down, z forward).
            rng: source of noise and dropout: a Generator (advanced), a seed, or None for
                the fixed seed 0.
        """
        if not isinstance(scene, Scene):
            raise InvalidInputError(f"scene must be a Scene, got {type(scene).__name__}")
        rng = _as_generator(rng)
        pose = _check_transform(pose, "pose")
        rays = self.pixel_rays().reshape(-1, 3)
        hits = scene.cast(pose[:3, 3], rays @ pose[:3, :3].T)
        n = len(hits)
        # distance is along the unit ray; z-depth divides by the length of the z=1 ray.
        z = hits.distance.astype(np.float64) / np.linalg.norm(rays[hits.ray], axis=1)
        cos = np.abs(np.einsum("ij,ij->i", hits.normal, hits.direction))
        if self.depth_noise > 0:
            z = z + rng.normal(0.0, 1.0, n) * self.depth_noise * z**2
        keep = (z >= self.min_depth) & (z <= self.max_depth) & (cos >= self.min_incidence_cos)
        if self.dropout > 0:
            keep &= rng.random(n) >= self.dropout
        ray, z = hits.ray[keep], z[keep]
        hw = (self.height, self.width)
        depth = np.zeros(self.height * self.width, np.float32)
        depth[ray] = z
        label = np.full(self.height * self.width, -1, np.int64)
        label[ray] = hits.label[keep]
        instance = np.full(self.height * self.width, -1, np.int64)
        instance[ray] = hits.instance[keep]
        pixels = np.stack([ray % self.width, ray // self.width], 1)
        return DepthFrame(
            depth=depth.reshape(hw), label=label.reshape(hw), instance=instance.reshape(hw),
            points=(rays[ray] * depth[ray, None]).astype(np.float32), pixels=pixels,
            point_label=hits.label[keep], point_instance=hits.instance[keep])
