"""LiDAR frames and sequences of simulated street scenes as ``torch_geometric.data.Data``.

A sequence generates one layout (:func:`geo3d.sim.layout.generate_layout`), builds its
meshes once, and per frame only re-poses the moving agents (:meth:`Scene.moved`), moves
them with :class:`geo3d.sim.motion.Traffic` and sweeps a :class:`SpinningLidar` mounted on
the ego vehicle. Everything is a pure function of the seed.

Frame attributes (``N`` points, ``K`` boxes):

* ``pos`` float32 ``[N, 3]``: points in the LiDAR frame (x forward, y left, z up);
* ``x`` float32 ``[N, 1]``: intensity in [0, 1];
* ``y`` int64 ``[N]``: semantic class, an index into :data:`geo3d.sim.classes.CLASSES`;
* ``instance`` int64 ``[N]``: row of ``boxes`` the point belongs to, -1 for background;
* ``boxes`` float32 ``[K, 7]``: (x, y, z centre, length, width, height, yaw) in the LiDAR
  frame, yaw in [-pi, pi) about +z (0 along +x), one per object with at least one point,
  ordered by track id: the object's tight mesh extent in its yaw frame, grown by
  ``box_margin`` on every side;
* ``box_labels`` int64 ``[K]``: class index (0 car, 1 pedestrian, 2 cyclist);
* ``track_id`` int64 ``[K]``: identity of the object, constant over a sequence;
* ``frame`` int: index in the sequence (0 for single frames);
* ``ego_pose`` float32 ``[1, 4, 4]``: world-from-LiDAR pose (the leading 1 makes a
  ``Batch`` stack it to ``[B, 4, 4]``); ``inv(ego_pose[t]) @ ego_pose[t-1]`` maps frame
  ``t-1`` points into frame ``t``.

A scene spans ``SceneConfig.ground_extent`` (120 m) and the ego starts within
``SceneConfig.ego_s``; at up to 12 m/s it leaves the populated road after about 4 s
(40 frames), so enlarge ``ground_extent`` (or move ``ego_s`` back) for longer sequences.
Motion within a sweep (rolling shutter) is not simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_positive
from geo3d.sim.classes import class_index
from geo3d.sim.layout import Layout, SceneConfig, generate_layout
from geo3d.sim.lidar import LidarScan, SpinningLidar, _check_int
from geo3d.sim.motion import MotionConfig, Traffic
from geo3d.sim.scene import Scene, SeedLike, _as_generator

__all__ = ["SimConfig", "iter_sequence", "simulate_sequence", "simulate_frame"]


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulated LiDAR frame or sequence depends on besides the seed.

    Args:
        scene: the layout (default ``SceneConfig()``).
        lidar: the sensor (default ``SpinningLidar()``: 64 x 1800 rays).
        motion: the kinematics (default ``MotionConfig()``).
        box_margin: boxes are the tight mesh extent grown by this on every side, metres
            (default 0.05: over 99% of object points fall inside with 1.5 cm range noise).
        frame_period: seconds between frames (default 0.1: 10 Hz).
    """

    scene: SceneConfig = field(default_factory=SceneConfig)
    lidar: SpinningLidar = field(default_factory=SpinningLidar)
    motion: MotionConfig = field(default_factory=MotionConfig)
    box_margin: float = 0.05
    frame_period: float = 0.1

    def __post_init__(self) -> None:
        for name, kind in (("scene", SceneConfig), ("lidar", SpinningLidar),
                           ("motion", MotionConfig)):
            if not isinstance(getattr(self, name), kind):
                raise InvalidInputError(f"{name} must be a {kind.__name__}, got "
                                        f"{type(getattr(self, name)).__name__}")
        check_positive(self.box_margin, "box_margin", allow_zero=True)
        check_positive(self.frame_period, "frame_period")


def _box(vertices: np.ndarray, forward: np.ndarray, sensor: np.ndarray,
         margin: float) -> np.ndarray:
    """The yaw-only box ``[7]`` in the sensor frame of world ``vertices`` whose heading is
    the world direction ``forward``: tight extent in the yaw frame, plus ``margin``."""
    rot = sensor[:3, :3]
    local = (vertices - sensor[:3, 3]) @ rot  # R^T (v - t), row-wise
    f = rot.T @ forward
    yaw = math.atan2(f[1], f[0])
    c, s = math.cos(yaw), math.sin(yaw)
    xy = local[:, :2] @ np.array([[c, -s], [s, c]])  # rotate by -yaw
    lo = np.concatenate([xy.min(0), local[:, 2:].min(0)])
    hi = np.concatenate([xy.max(0), local[:, 2:].max(0)])
    cx, cy, cz = (lo + hi) / 2
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    return np.array([c * cx - s * cy, s * cx + c * cy, cz, *(hi - lo + 2 * margin), yaw])


def _frame_data(scene: Scene, layout: Layout, scan: LidarScan, sensor: np.ndarray,
                frame: int, margin: float) -> Data:
    first = len(layout.statics)
    tracks = np.unique(scan.instance[scan.instance >= 0])  # sorted: a stable box order
    row = np.full(len(layout.agents) + 1, -1, dtype=np.int64)  # row[-1] = -1: background
    row[tracks] = np.arange(len(tracks))
    boxes = np.zeros((len(tracks), 7))
    for i, k in enumerate(tracks):
        mesh = scene.meshes[first + k]
        boxes[i] = _box(scene.world_vertices(first + k).astype(np.float64),
                        mesh.transform[:3, 0], sensor, margin)
    labels = [class_index(layout.agents[k].cls) for k in tracks]
    return Data(
        pos=torch.from_numpy(scan.points),
        x=torch.from_numpy(scan.intensity).unsqueeze(1),
        y=torch.from_numpy(scan.label),
        instance=torch.from_numpy(row[scan.instance]),
        boxes=torch.from_numpy(boxes.astype(np.float32)),
        box_labels=torch.tensor(labels, dtype=torch.long),
        track_id=torch.from_numpy(tracks.astype(np.int64)),
        frame=int(frame),
        ego_pose=torch.from_numpy(sensor.astype(np.float32)).unsqueeze(0),
    )


def iter_sequence(seed: SeedLike, config: Optional[SimConfig] = None) -> Iterator[Data]:
    """Simulate an endless LiDAR stream of one street scene, frame after frame.

    Args:
        seed: a non-negative int, ``numpy.random.SeedSequence`` or ``Generator``; the
            stream is a pure function of it.
        config: the simulation settings (default ``SimConfig()``).

    Yields:
        One ``Data`` per frame (attributes in the module docstring), ``frame`` = 0, 1, ...
    """
    config = SimConfig() if config is None else config
    if not isinstance(config, SimConfig):
        raise InvalidInputError(f"config must be a SimConfig, got {type(config).__name__}")
    rng = _as_generator(seed, "seed", allow_none=False)
    return _stream(rng, config)


def _stream(rng: np.random.Generator, config: SimConfig) -> Iterator[Data]:
    layout = generate_layout(config.scene, rng)
    traffic = Traffic(layout, config.motion, rng)
    state = traffic.initial_state()
    poses = traffic.poses(state)
    scene = layout.scene(poses[:-1])
    first = len(layout.statics)
    moving = [k for k, a in enumerate(layout.agents) if a.behaviour != "parked"]
    frame = 0
    while True:
        sensor = config.lidar.mount(poses[-1])
        scan = config.lidar.scan(scene, sensor, rng)
        yield _frame_data(scene, layout, scan, sensor, frame, config.box_margin)
        state = traffic.step(state, config.frame_period, rng)
        poses = traffic.poses(state)
        scene = scene.moved({first + k: poses[k] for k in moving})
        frame += 1


def simulate_sequence(seed: SeedLike, length: int,
                      config: Optional[SimConfig] = None) -> list[Data]:
    """The first ``length`` frames of :func:`iter_sequence` (``length >= 1``)."""
    _check_int(length, "length", 1)
    stream = iter_sequence(seed, config)
    return [next(stream) for _ in range(length)]


def simulate_frame(seed: SeedLike, config: Optional[SimConfig] = None) -> Data:
    """One LiDAR frame of a fresh street scene (frame 0 of :func:`iter_sequence`)."""
    return next(iter_sequence(seed, config))
