"""A spinning multi-beam LiDAR (Velodyne HDL-64E-like, as on KITTI) simulated by ray casting.

Rays are cast with Open3D's RaycastingScene through :meth:`geo3d.sim.scene.Scene.cast`; this
module adds what the sensor does: the beam pattern, range limits, Gaussian range noise,
random dropout and an intensity model (surface reflectivity x incidence x range falloff).
Motion distortion within a sweep (rolling shutter) is not modelled: a sweep is instantaneous.

Reference: Geiger et al., "Vision meets Robotics: The KITTI Dataset", IJRR 2013 (HDL-64E
at 10 Hz, 64 beams from +2.0 to -24.8 degrees, mounted 1.73 m above the road).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_positive
from geo3d.sim.scene import Scene, SeedLike, _as_generator, _check_transform

__all__ = ["SpinningLidar", "LidarScan"]


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_probability(value: float, name: str) -> None:
    check_positive(value, name, allow_zero=True)
    if value >= 1.0:
        raise InvalidInputError(f"{name} must be in [0, 1), got {value!r}")


@lru_cache(maxsize=8)
def _beam_directions(channels: int, fov_up: float, fov_down: float, steps: int) -> np.ndarray:
    """Unit directions ``[channels * steps, 3]``, float32, ring-major (azimuth from +pi,
    spinning clockwise)."""
    el = np.radians(np.linspace(fov_up, fov_down, channels))
    az = np.pi - 2 * np.pi * np.arange(steps) / steps
    ce = np.cos(el)[:, None]
    d = np.stack([ce * np.cos(az), ce * np.sin(az), np.broadcast_to(np.sin(el)[:, None],
                                                                     (channels, steps))], -1)
    d = d.reshape(-1, 3).astype(np.float32)
    d.setflags(write=False)
    return d


@dataclass(frozen=True, eq=False)
class LidarScan:
    """One LiDAR sweep; ``N`` returns ordered by ring (top beam first), then azimuth.

    Attributes:
        points: returns in the sensor frame (x forward, y left, z up), float32 ``[N, 3]``.
        intensity: return intensity in [0, 1], float32 ``[N]``.
        range: measured range in metres, float32 ``[N]`` (``|points|``).
        ring: beam (channel) index, 0 = top, int64 ``[N]``.
        column: azimuth step index, int64 ``[N]``.
        label: semantic class of the surface hit, int64 ``[N]``.
        instance: instance id of the surface hit (-1 background), int64 ``[N]``.
        mesh: index into ``Scene.meshes`` of the surface hit, int64 ``[N]``.
    """

    points: np.ndarray
    intensity: np.ndarray
    range: np.ndarray
    ring: np.ndarray
    column: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    mesh: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class SpinningLidar:
    """A spinning LiDAR: ``channels`` beams swept over ``azimuth_steps`` columns.

    Args:
        channels: number of beams (default 64).
        fov_up: elevation of the top beam in degrees (default +2.0).
        fov_down: elevation of the bottom beam in degrees (default -24.8).
        azimuth_steps: columns per revolution (default 1800, 115,200 rays a sweep).
        mount_height: sensor height above the vehicle's ground contact, metres (1.73).
        min_range: returns closer than this are dropped, metres (default 1.0).
        max_range: returns farther than this are dropped, metres (default 120.0).
        range_noise: standard deviation of the Gaussian range noise, metres (0.015).
        dropout: probability that a return is lost at random (default 0.02).
        intensity_noise: standard deviation of additive intensity noise (default 0.02).
        incidence_exponent: intensity scales with ``|cos(incidence)| ** exponent``; 1 is
            Lambertian, smaller is flatter (default 0.5).
        range_falloff: intensity scales with ``exp(-range_falloff * range)``, 1/m (0.005).
        azimuth_jitter: if True each sweep starts at a random azimuth within one column, as
            a free-running spinner does (default True).

    Shapes:
        ``scan(scene, pose, rng)`` casts ``channels * azimuth_steps`` rays and returns a
        :class:`LidarScan` of the ``N`` returns.
    """

    channels: int = 64
    fov_up: float = 2.0
    fov_down: float = -24.8
    azimuth_steps: int = 1800
    mount_height: float = 1.73
    min_range: float = 1.0
    max_range: float = 120.0
    range_noise: float = 0.015
    dropout: float = 0.02
    intensity_noise: float = 0.02
    incidence_exponent: float = 0.5
    range_falloff: float = 0.005
    azimuth_jitter: bool = True

    def __post_init__(self) -> None:
        _check_int(self.channels, "channels", 1)
        _check_int(self.azimuth_steps, "azimuth_steps", 1)
        for name in ("fov_up", "fov_down"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not -90.0 <= v <= 90.0:
                raise InvalidInputError(f"{name} must be a number of degrees in [-90, 90], "
                                        f"got {v!r}")
        if self.fov_down > self.fov_up or (self.channels > 1 and self.fov_down == self.fov_up):
            raise InvalidInputError(f"fov_down ({self.fov_down}) must be below fov_up "
                                    f"({self.fov_up})")
        check_positive(self.mount_height, "mount_height", allow_zero=True)
        check_positive(self.min_range, "min_range", allow_zero=True)
        check_positive(self.max_range, "max_range")
        if self.min_range >= self.max_range:
            raise InvalidInputError(f"min_range ({self.min_range}) must be below max_range "
                                    f"({self.max_range})")
        for name in ("range_noise", "intensity_noise", "incidence_exponent", "range_falloff"):
            check_positive(getattr(self, name), name, allow_zero=True)
        _check_probability(self.dropout, "dropout")
        if not isinstance(self.azimuth_jitter, bool):
            raise InvalidInputError(f"azimuth_jitter must be a bool, got {self.azimuth_jitter!r}")

    @property
    def num_rays(self) -> int:
        """Rays per sweep: ``channels * azimuth_steps``."""
        return self.channels * self.azimuth_steps

    def elevations(self) -> np.ndarray:
        """Beam elevation angles in radians, top first, float64 ``[channels]``."""
        return np.radians(np.linspace(self.fov_up, self.fov_down, self.channels))

    def mount(self, base_pose: np.ndarray) -> np.ndarray:
        """World-from-sensor pose of a sensor ``mount_height`` above ``base_pose`` (a
        world-from-vehicle pose at ground level), along the vehicle's up axis."""
        base = _check_transform(base_pose, "base_pose")
        pose = base.copy()
        pose[:3, 3] = base[:3, 3] + self.mount_height * base[:3, 2]
        return pose

    def scan(self, scene: Scene, pose: np.ndarray,
             rng: Optional[SeedLike] = None) -> LidarScan:
        """Sweep the scene once.

        Args:
            scene: what to scan.
            pose: world-from-sensor rigid transform ``[4, 4]``.
            rng: source of noise, dropout and the azimuth phase: a Generator (advanced),
                a seed, or None for the fixed seed 0 (the sweep is deterministic given it).

        Returns:
            The :class:`LidarScan` of the returns within ``[min_range, max_range]``.
        """
        if not isinstance(scene, Scene):
            raise InvalidInputError(f"scene must be a Scene, got {type(scene).__name__}")
        rng = _as_generator(rng)
        pose = _check_transform(pose, "pose")
        local = _beam_directions(self.channels, float(self.fov_up), float(self.fov_down),
                                 self.azimuth_steps)
        rot = pose[:3, :3]
        if self.azimuth_jitter:
            a = rng.uniform(0.0, 2 * np.pi / self.azimuth_steps)
            c, s = np.cos(a), np.sin(a)
            rot = rot @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        hits = scene.cast(pose[:3, 3], local @ rot.T.astype(np.float32))
        n = len(hits)
        dist = hits.distance
        if self.range_noise > 0:
            dist = dist + rng.normal(0.0, self.range_noise, n).astype(np.float32)
        keep = (dist >= self.min_range) & (dist <= self.max_range)
        if self.dropout > 0:
            keep &= rng.random(n) >= self.dropout
        cos = np.abs(np.einsum("ij,ij->i", hits.normal, hits.direction))
        intensity = hits.reflectivity * np.exp(np.float32(-self.range_falloff) * dist)
        if self.incidence_exponent > 0:
            intensity *= np.minimum(cos, 1.0) ** np.float32(self.incidence_exponent)
        if self.intensity_noise > 0:
            intensity += rng.normal(0.0, self.intensity_noise, n).astype(np.float32)
        ray, r = hits.ray[keep], dist[keep]
        # Points in the sensor frame: the (rotated) beam direction times the measured range.
        sensor_dirs = hits.direction[keep] @ pose[:3, :3].astype(np.float32)
        return LidarScan(
            points=sensor_dirs * r[:, None],
            intensity=np.clip(intensity[keep], 0.0, 1.0),
            range=r,
            ring=ray // self.azimuth_steps,
            column=ray % self.azimuth_steps,
            label=hits.label[keep],
            instance=hits.instance[keep],
            mesh=hits.mesh[keep],
        )
