"""Skin a posed hand with capsules and a palm hull, place it in a table-top scene and
render it with the simulated depth camera.

trimesh builds the primitive templates (cached in :mod:`geo3d.sim._mesh_utils`), scipy's
``ConvexHull`` the palm, and Open3D's RaycastingScene casts the rays
(:class:`geo3d.sim.depth_camera.DepthCamera`); the scene layout is ours.

Scene (camera frame: x right, y down, z forward, metres): the hand, palm towards the
camera (tilted and rolled at random), 0.3-0.6 m away; a forearm from the wrist (random
wrist flexion and deviation); a table below the hand seen from above; 2-6 clutter objects
on the table away from the hand; sometimes a wall behind. Point labels: :data:`HAND_LABELS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation

from geo3d.errors import InvalidInputError
from geo3d.sim._mesh_utils import Part, box, rod, sphere
from geo3d.sim.depth_camera import DepthCamera, DepthFrame
from geo3d.sim.hand import HandPose, HandShape, hand_joints, sample_pose, sample_shape
from geo3d.sim.scene import Scene, SceneMesh, SeedLike, _as_generator

__all__ = ["HAND_LABELS", "HandSceneConfig", "HandFrame", "hand_mesh", "render_hand"]

HAND_LABELS: tuple[str, ...] = ("none", "hand", "forearm", "table", "clutter", "wall")
"""Semantic label of each rendered point (index into this tuple)."""

# capsule radius (metres, template scale) per finger and segment, base to tip
_RADII = np.array([[0.0115, 0.0100, 0.0088], [0.0095, 0.0085, 0.0075],
                   [0.0098, 0.0088, 0.0078], [0.0093, 0.0083, 0.0073],
                   [0.0082, 0.0074, 0.0066]])
_PALM_HALF_THICKNESS = 0.014
_FOREARM_RADIUS = 0.026


def _default_camera() -> DepthCamera:
    return DepthCamera(width=320, height=240, fx=277.1, fy=277.1, depth_noise=5e-3,
                       dropout=0.02, max_depth=3.0)


@dataclass(frozen=True)
class HandSceneConfig:
    """Settings of :func:`render_hand`.

    Args:
        camera: the depth camera (default 320x240, 60 degrees, noise ``5e-3 z^2``
            (1.25 mm at 0.5 m), 2% dropout, range up to 3 m).
        distance: range of the hand's distance from the camera, metres (default 0.3-0.6).
        tilt_deg: largest angle between the palm normal and the direction to the camera
            (default 50).
        roll_deg: largest roll about the optical axis from fingers-up (default 90).
        wrist_deg: largest wrist flexion/deviation of the forearm (default 35).
        clutter: range of the number of clutter objects on the table (default 2-6).
        gesture_prob: probability of a perturbed gesture rather than a uniform pose
            (default 0.6).
    """

    camera: DepthCamera = field(default_factory=_default_camera)
    distance: tuple[float, float] = (0.3, 0.6)
    tilt_deg: float = 50.0
    roll_deg: float = 90.0
    wrist_deg: float = 35.0
    clutter: tuple[int, int] = (2, 6)
    gesture_prob: float = 0.6

    def __post_init__(self) -> None:
        if not isinstance(self.camera, DepthCamera):
            raise InvalidInputError(f"camera must be a DepthCamera, got {type(self.camera).__name__}")
        lo, hi = self.distance
        if not 0 < lo <= hi:
            raise InvalidInputError(f"distance must be 0 < low <= high metres, got {self.distance!r}")
        for name in ("tilt_deg", "roll_deg", "wrist_deg"):
            v = getattr(self, name)
            if not 0 <= v <= 180:
                raise InvalidInputError(f"{name} must be in [0, 180], got {v!r}")
        c0, c1 = self.clutter
        if not 0 <= c0 <= c1:
            raise InvalidInputError(f"clutter must be 0 <= low <= high, got {self.clutter!r}")
        if not 0 <= self.gesture_prob <= 1:
            raise InvalidInputError(f"gesture_prob must be in [0, 1], got {self.gesture_prob!r}")


@dataclass(frozen=True, eq=False)
class HandFrame:
    """A rendered hand frame.

    Attributes:
        frame: the depth image and its points (labels index :data:`HAND_LABELS`).
        joints: the 21 joints in camera coordinates, float32 ``[21, 3]`` (metres).
        hand_to_camera: camera-from-hand-frame rigid transform ``[4, 4]``.
        shape, pose: the subject and its joint angles.
    """

    frame: DepthFrame
    joints: np.ndarray
    hand_to_camera: np.ndarray
    shape: HandShape
    pose: HandPose


def _merge(parts: list[Part]) -> Part:
    offsets = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
    return (np.concatenate([v for v, _ in parts]),
            np.concatenate([f + o for (_, f), o in zip(parts, offsets)]))


def _palm(shape: HandShape) -> Part:
    b = shape.bases
    w = 0.030 * shape.scale
    outline = np.array([[0.0, -w, 0.0], [0.0, w, 0.0], [0.045 * shape.scale, -w, 0.0],
                        *b[1:], b[0] + [0.01, 0.0, -0.012]])
    outline[1:5, 0] = np.minimum(outline[1:5, 0], outline[5:9, 0].min())
    t = _PALM_HALF_THICKNESS * shape.scale
    pts = np.concatenate([outline + [0, 0, t], outline - [0, 0, t]])
    hull = ConvexHull(pts)
    return pts, hull.simplices.astype(np.int64)


def hand_mesh(shape: HandShape, joints: np.ndarray) -> Part:
    """The skin of a posed hand in the hand frame: capsules over the finger bones and a
    convex palm (``(vertices [V, 3], faces [T, 3])``).

    Args:
        shape: the subject (radii scale with ``shape.scale``).
        joints: its 21 joints in the hand frame, e.g. from :func:`hand_joints`.
    """
    parts = [_palm(shape)]
    for f in range(5):
        for k in range(3):
            a, b = joints[1 + 4 * f + k], joints[2 + 4 * f + k]
            r = _RADII[f, k] * shape.scale
            parts += [rod(a, b, r, sections=10), sphere(b, r, 1)]
            if k == 0:
                parts.append(sphere(a, r * 1.05, 1))
    return _merge(parts)


def _hand_rotation(rng: np.random.Generator, cfg: HandSceneConfig) -> np.ndarray:
    # fingers up (-y), palm towards the camera (-z), little finger to image left (-x)
    r0 = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    axis_angle = rng.uniform(0, 2 * np.pi)
    tilt = np.radians(cfg.tilt_deg) * np.sqrt(rng.uniform())
    tilt_r = Rotation.from_rotvec(tilt * np.array([np.cos(axis_angle), np.sin(axis_angle), 0]))
    roll = Rotation.from_rotvec([0, 0, np.radians(rng.uniform(-cfg.roll_deg, cfg.roll_deg))])
    return (roll * tilt_r).as_matrix() @ r0


def _clutter_part(rng: np.random.Generator) -> tuple[Part, float]:
    """A random object resting on z=0 (local frame) and its footprint radius."""
    kind = int(rng.integers(3))
    s = rng.uniform(0.03, 0.15, 3)
    if kind == 0:
        return box(s, center=(0, 0, s[2] / 2)), float(np.hypot(s[0], s[1]) / 2)
    if kind == 1:
        return rod((0, 0, 0), (0, 0, s[2]), s[0] / 2, sections=16), float(s[0] / 2)
    return sphere((0, 0, s[0] / 2), s[0] / 2, 2), float(s[0] / 2)


def _table_frame(rng: np.random.Generator, below: np.ndarray) -> np.ndarray:
    """Rigid transform whose local z is the table normal (towards the camera and up)."""
    tilt = np.radians(rng.uniform(25, 65))
    n = np.array([0.0, -np.cos(tilt), -np.sin(tilt)])  # up in the image and towards camera
    u = np.array([1.0, 0.0, 0.0])
    t = np.eye(4)
    t[:3, :3] = np.stack([u, np.cross(n, u), n], 1)
    t[:3, 3] = below
    return t


def render_hand(rng: Optional[SeedLike] = None,
                config: Optional[HandSceneConfig] = None) -> HandFrame:
    """Sample a subject, a pose and a scene, and render one depth frame.

    Args:
        rng: Generator (advanced), seed, or None for seed 0.
        config: scene settings (default ``HandSceneConfig()``).

    Returns:
        A :class:`HandFrame`; its ``frame.point_label`` indexes :data:`HAND_LABELS`.
    """
    rng = _as_generator(rng)
    cfg = HandSceneConfig() if config is None else config
    if not isinstance(cfg, HandSceneConfig):
        raise InvalidInputError(f"config must be a HandSceneConfig, got {type(cfg).__name__}")
    cam = cfg.camera
    shape = sample_shape(rng)
    pose = sample_pose(rng, gesture_prob=cfg.gesture_prob)
    joints_h = hand_joints(shape, pose)

    rot = _hand_rotation(rng, cfg)
    depth = rng.uniform(*cfg.distance)
    half_w, half_h = cam.width / cam.fx / 2 * 0.5, cam.height / cam.fy / 2 * 0.5
    centre = np.array([rng.uniform(-half_w, half_w) * depth, rng.uniform(-half_h, half_h) * depth,
                       depth])
    pose_h = np.eye(4)
    pose_h[:3, :3] = rot
    pose_h[:3, 3] = centre - rot @ np.array([0.07 * shape.scale, 0.0, 0.0])

    meshes = []
    v, f = hand_mesh(shape, joints_h)
    meshes.append(SceneMesh(v, f, label=1, instance=0, transform=pose_h))
    wrist = Rotation.from_euler("yz", rng.uniform(-cfg.wrist_deg, cfg.wrist_deg, 2),
                                degrees=True).as_matrix()
    arm_dir = rot @ wrist @ np.array([-1.0, 0.0, 0.0])
    # the forearm (a flat-ended cylinder) starts just behind the wrist joint, so the palm
    # is visible around the wrist
    w0 = pose_h[:3, 3] - rot @ np.array([0.008 * shape.scale, 0.0, 0.0])
    arm_r = _FOREARM_RADIUS * shape.scale
    v, f = rod(w0, w0 + 0.3 * arm_dir, arm_r, sections=20)
    meshes.append(SceneMesh(v, f, label=2, instance=1))

    # the table: below the lowest point of the hand (image down = +y), seen from above
    gap = rng.uniform(0.03, 0.2)
    world_joints = joints_h @ rot.T + pose_h[:3, 3]
    below = np.array([centre[0], world_joints[:, 1].max() + gap + 0.02, centre[2] + 0.05])
    table = _table_frame(rng, below)
    v, f = box((3.0, 3.0, 0.02), center=(0, 0, -0.01))
    meshes.append(SceneMesh(v, f, label=3, transform=table))
    hand_on_table = np.linalg.solve(table, np.append(centre, 1.0))[:2]
    for i in range(int(rng.integers(cfg.clutter[0], cfg.clutter[1] + 1))):
        (v, f), radius = _clutter_part(rng)
        for _ in range(10):
            xy = hand_on_table + rng.uniform([-0.5, -0.1], [0.5, 0.6])
            if np.linalg.norm(xy - hand_on_table) > 0.18 + radius:
                break
        local = np.eye(4)
        local[:3, :3] = Rotation.from_euler("z", rng.uniform(0, 2 * np.pi)).as_matrix()
        local[:2, 3] = xy
        meshes.append(SceneMesh(v, f, label=4, instance=2 + i, transform=table @ local))
    if rng.random() < 0.5:
        v, f = box((4.0, 4.0, 0.02), center=(0, 0, rng.uniform(1.2, 2.5)))
        meshes.append(SceneMesh(v, f, label=5))

    frame = cam.render(Scene(meshes), np.eye(4), rng)
    return HandFrame(frame=frame, joints=world_joints.astype(np.float32),
                     hand_to_camera=pose_h, shape=shape, pose=pose)

