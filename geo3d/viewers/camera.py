"""Cameras and presets: where a picture is taken from, and where a 3D point lands in it.

Open3D's ``rendering.Camera`` is set from a :class:`Camera` with ``look_at`` and
``set_projection`` (standard OpenGL look-at / perspective / orthographic matrices).
:func:`project` is our own numpy copy of that maths, so tests and users can tell where a
point will be drawn.

Presets (LiDAR frame: x forward, y left, z up), each framed to the scene's bounds:

* ``"bev"`` (alias ``"top"``): bird's-eye view, orthographic, looking down; forward (+x)
  points up the image and left (+y) to the left, as in :func:`geo3d.viewers.bev_image`;
* ``"chase"``: perspective from behind and above, looking forward;
* ``"front"``: perspective from ahead (+x), looking back;
* ``"side"``: perspective from the left (+y);
* ``"iso"``: perspective from (+x, +y, +z) diagonally (the default for objects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from geo3d.errors import InvalidInputError

__all__ = ["Camera", "PRESETS", "camera_preset", "resolve_camera", "project"]

PRESETS = ("bev", "top", "chase", "front", "side", "iso")
_DIRECTIONS = {  # unit vector from the centre to the eye, and the up vector
    "chase": ((-0.8, 0.0, 0.6), (0.0, 0.0, 1.0)),
    "front": ((1.0, 0.0, 0.25), (0.0, 0.0, 1.0)),
    "side": ((0.0, 1.0, 0.25), (0.0, 0.0, 1.0)),
    "iso": ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0)),
}


def _vec3(value: Sequence[float], name: str) -> tuple[float, float, float]:
    arr = np.asarray(value, float)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} must be 3 finite numbers, got {value!r}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Camera:
    """A look-at camera.

    Args:
        center: the point looked at.
        eye: the camera position.
        up: the direction that points up in the picture.
        fov: vertical field of view in degrees, perspective only (default 60).
        ortho_half_height: half the picture's height in metres for an orthographic
            camera; ``None`` (default) for perspective. The half width follows the aspect.
        near, far: clipping distances from the eye (defaults 0.05 and 1,000 m).
    """

    center: tuple[float, float, float]
    eye: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov: float = 60.0
    ortho_half_height: Optional[float] = None
    near: float = 0.05
    far: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("center", "eye", "up"):
            object.__setattr__(self, name, _vec3(getattr(self, name), name))
        forward = np.subtract(self.center, self.eye)
        if np.linalg.norm(forward) == 0:
            raise InvalidInputError("camera eye and center must differ")
        if np.linalg.norm(np.cross(forward, self.up)) < 1e-9 * np.linalg.norm(forward):
            raise InvalidInputError("camera up must not be parallel to the viewing direction")
        if not 0 < self.fov < 180:
            raise InvalidInputError(f"fov must be in (0, 180) degrees, got {self.fov!r}")
        if self.ortho_half_height is not None and not self.ortho_half_height > 0:
            raise InvalidInputError(f"ortho_half_height must be > 0, got {self.ortho_half_height!r}")
        if not 0 < self.near < self.far:
            raise InvalidInputError(f"need 0 < near < far, got near={self.near}, far={self.far}")

    def apply(self, camera, width: int, height: int) -> None:
        """Set an ``open3d.visualization.rendering.Camera`` to this view."""
        from open3d.visualization import rendering

        camera.look_at(list(self.center), list(self.eye), list(self.up))
        aspect = width / height
        if self.ortho_half_height is None:
            camera.set_projection(self.fov, aspect, self.near, self.far,
                                  rendering.Camera.FovType.Vertical)
        else:
            hh = self.ortho_half_height
            camera.set_projection(rendering.Camera.Projection.Ortho, -hh * aspect, hh * aspect,
                                  -hh, hh, self.near, self.far)


def camera_preset(name: str, lo: Sequence[float], hi: Sequence[float],
                  aspect: float = 4 / 3, fov: float = 60.0) -> Camera:
    """A preset camera (see the module docstring) framing the box ``lo .. hi``.

    Args:
        name: one of :data:`PRESETS`.
        lo, hi: opposite corners of the box to frame.
        aspect: width / height of the picture (default 4/3).
        fov: vertical field of view of the perspective presets (default 60 degrees).
    """
    if name not in PRESETS:
        raise InvalidInputError(f"camera must be one of {PRESETS} or a Camera, got {name!r}")
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    center = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2, 1e-3)
    if name in ("bev", "top"):
        # rows follow x, columns follow y: fit both in the picture
        hh = 1.05 * max(half[0], half[1] / aspect)
        height = half[2] + 10 * hh
        return Camera(tuple(center), tuple(center + [0, 0, height]), (1.0, 0.0, 0.0),
                      ortho_half_height=hh, near=1e-3 * height, far=height + half[2] + 1)
    direction, up = _DIRECTIONS[name]
    direction = np.asarray(direction) / np.linalg.norm(direction)
    radius = float(np.linalg.norm(half))
    half_fov = np.radians(min(fov, np.degrees(2 * np.arctan(np.tan(np.radians(fov) / 2) * aspect)))) / 2
    distance = 1.05 * radius / np.sin(half_fov)
    return Camera(tuple(center), tuple(center + distance * direction), up, fov=fov,
                  near=max(distance - 2 * radius, distance * 1e-3), far=distance + 2 * radius)


def resolve_camera(camera: Union[str, Camera, None], bounds, kind: str,
                   width: int, height: int) -> Camera:
    """A :class:`Camera` from a preset name, a camera, or ``None`` (the scene's default:
    ``"bev"`` for LiDAR scenes, ``"iso"`` for objects); ``bounds`` is ``(lo, hi)`` or
    ``None`` for an empty scene (a 10 m cube at the origin)."""
    if isinstance(camera, Camera):
        return camera
    if camera is not None and not isinstance(camera, str):
        raise InvalidInputError(f"camera must be a preset name or a Camera, got {type(camera).__name__}")
    if bounds is None:
        bounds = (np.full(3, -5.0), np.full(3, 5.0))
    name = camera or ("bev" if kind == "lidar" else "iso")
    return camera_preset(name, bounds[0], bounds[1], aspect=width / height)


def project(camera: Camera, points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel coordinates of 3D points as :meth:`Camera.apply` + Open3D draws them.

    Args:
        camera: the camera.
        points: ``[P, 3]`` world points.
        width, height: picture size in pixels.

    Returns:
        ``[P, 3]``: column and row (pixel centres at ``i + 0.5``; row 0 at the top) and
        the depth along the viewing direction (points behind the eye have depth <= 0).
    """
    pts = np.asarray(points, float).reshape(-1, 3)
    eye, center, up = (np.asarray(v) for v in (camera.eye, camera.center, camera.up))
    f = (center - eye) / np.linalg.norm(center - eye)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    rel = pts - eye
    xc, yc, depth = rel @ r, rel @ u, rel @ f
    aspect = width / height
    if camera.ortho_half_height is None:
        t = np.tan(np.radians(camera.fov) / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            xn, yn = xc / (depth * t * aspect), yc / (depth * t)
    else:
        hh = camera.ortho_half_height
        xn, yn = xc / (hh * aspect), yc / hh
    return np.stack([(xn + 1) / 2 * width, (1 - yn) / 2 * height, depth], 1)
