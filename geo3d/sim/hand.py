"""An articulated 21-joint hand: skeleton, per-subject bone lengths, joint-angle limits,
forward kinematics and pose sampling (grasps, gestures, random poses within the limits).

Our own numpy code: the kinematic model is a few rotations per finger, and no maintained
library offers a hand skeleton without a learned mesh (MANO needs licensed weights).
Skinning and rendering are in :mod:`geo3d.sim.hand_render`.

Hand frame (metres, a right hand): origin at the wrist, x distal (towards the middle
finger), z out of the palm (palmar side), y = z cross x (towards the little finger).
Fingers flex towards +z. Joint order (:data:`JOINTS`): wrist 0; thumb 1-4 (CMC, MCP, IP,
tip); index 5-8, middle 9-12, ring 13-16, pinky 17-20 (MCP, PIP, DIP, tip).

Angle limits follow the active ranges of motion in Hume et al., "Functional range of
motion of the joints of the hand", J. Hand Surg. 1990, and Lee & Kunii, "Model-based
analysis of hand posture", IEEE CG&A 1995 (DIP flexion about 2/3 of PIP flexion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from geo3d.errors import InvalidInputError
from geo3d.sim.scene import SeedLike, _as_generator

__all__ = ["JOINTS", "BONES", "FINGERS", "ANGLE_LIMITS", "GESTURES", "HandShape", "HandPose",
           "hand_joints", "sample_shape", "sample_pose", "bone_lengths"]

FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")

JOINTS: tuple[str, ...] = ("wrist",) + tuple(
    f"{f}_{j}" for f in FINGERS
    for j in (("cmc", "mcp", "ip", "tip") if f == "thumb" else ("mcp", "pip", "dip", "tip")))
"""The 21 joint names: wrist, then per finger four joints from base to tip."""

BONES: tuple[tuple[int, int], ...] = tuple(
    (0 if k == 0 else 1 + 4 * f + k - 1, 1 + 4 * f + k) for f in range(5) for k in range(4))
"""The kinematic tree as (parent, child) joint indices, 20 bones, parents first."""

# Template in the hand frame (an adult hand of average size, metres).
_BASES = np.array([  # CMC of the thumb, MCP of the fingers
    [0.030, -0.025, 0.012], [0.088, -0.026, 0.0], [0.090, -0.004, 0.0],
    [0.084, 0.015, 0.0], [0.076, 0.033, 0.0]])
_PHALANGES = np.array([  # thumb: metacarpal, proximal, distal; fingers: prox., middle, distal
    [0.046, 0.033, 0.027], [0.042, 0.025, 0.020], [0.046, 0.029, 0.021],
    [0.043, 0.027, 0.021], [0.034, 0.020, 0.018]])
_THUMB_DIR = np.array([0.75, -0.62, 0.15]) / np.linalg.norm([0.75, -0.62, 0.15])

ANGLE_LIMITS: dict[str, tuple[float, float]] = {
    # degrees; "finger_*" applies to index..pinky
    "finger_mcp_flex": (-15.0, 90.0),
    "finger_mcp_abd": (-15.0, 15.0),
    "finger_pip_flex": (0.0, 105.0),
    "finger_dip_flex": (0.0, 80.0),
    "thumb_cmc_flex": (-15.0, 45.0),
    "thumb_cmc_abd": (-10.0, 50.0),
    "thumb_opposition": (0.0, 60.0),
    "thumb_mcp_flex": (-5.0, 60.0),
    "thumb_ip_flex": (-10.0, 80.0),
}
"""Active range of each joint angle (degrees). Flexion is positive towards the palm."""

# Gestures as degrees: thumb (cmc_flex, cmc_abd, opp, mcp, ip), then per finger
# (mcp_flex, mcp_abd, pip, dip) for index, middle, ring, pinky.
GESTURES: dict[str, tuple] = {
    "open": ((0, 10, 5, 5, 5), (0, -8, 0, 0), (0, 0, 0, 0), (0, 5, 0, 0), (0, 10, 0, 0)),
    "flat": ((0, 0, 0, 0, 0), (0, 0, 5, 3), (0, 0, 5, 3), (0, 0, 5, 3), (0, 0, 5, 3)),
    "fist": ((30, 20, 50, 50, 40), (85, 0, 100, 60), (88, 0, 100, 60), (88, 0, 100, 60),
             (85, 0, 100, 60)),
    "point": ((30, 20, 50, 45, 40), (0, 0, 5, 5), (88, 0, 100, 60), (88, 0, 100, 60),
              (85, 0, 100, 60)),
    "victory": ((30, 20, 50, 45, 40), (0, -10, 5, 5), (0, 8, 5, 5), (88, 0, 100, 60),
                (85, 0, 100, 60)),
    "thumbs_up": ((-10, 40, 0, 0, 0), (85, 0, 100, 60), (88, 0, 100, 60), (88, 0, 100, 60),
                  (85, 0, 100, 60)),
    "call": ((-10, 45, 0, 0, 0), (85, 0, 100, 60), (88, 0, 100, 60), (88, 0, 100, 60),
             (0, 12, 0, 0)),
    "three": ((30, 20, 50, 45, 40), (0, -10, 5, 5), (0, 0, 5, 5), (0, 10, 5, 5),
              (85, 0, 100, 60)),
    "ok": ((25, 25, 45, 30, 35), (45, 0, 60, 45), (5, 0, 5, 5), (10, 5, 5, 5), (15, 10, 5, 5)),
    "pinch": ((25, 25, 45, 25, 30), (40, 0, 55, 40), (60, 0, 70, 45), (75, 0, 85, 55),
              (80, 0, 90, 60)),
    "grasp_cylinder": ((15, 35, 35, 20, 20), (45, 0, 60, 40), (50, 0, 65, 45), (55, 0, 65, 45),
                       (60, 0, 65, 45)),
    "grasp_sphere": ((10, 40, 30, 15, 15), (30, -10, 40, 30), (35, 0, 45, 30),
                     (35, 8, 45, 30), (35, 15, 45, 30)),
    "claw": ((10, 30, 20, 20, 30), (10, -8, 80, 60), (10, 0, 80, 60), (10, 5, 80, 60),
             (10, 10, 80, 60)),
}
"""Named poses (degrees) that :func:`sample_pose` perturbs."""


@dataclass(frozen=True, eq=False)
class HandShape:
    """A subject: the template scaled and with per-bone length variation.

    Attributes:
        bases: thumb CMC and finger MCP positions in the hand frame, float64 ``[5, 3]``.
        phalanges: bone lengths from each base outwards, float64 ``[5, 3]`` (metres).
        scale: the subject's overall scale relative to the template (1.0 = template).
    """

    bases: np.ndarray
    phalanges: np.ndarray
    scale: float = 1.0

    @classmethod
    def template(cls) -> "HandShape":
        """The average hand (middle finger tip about 19 cm from the wrist)."""
        return cls(_BASES.copy(), _PHALANGES.copy(), 1.0)


@dataclass(frozen=True, eq=False)
class HandPose:
    """Joint angles in degrees (see :data:`ANGLE_LIMITS`).

    Attributes:
        thumb: ``[5]`` CMC flexion, CMC abduction, opposition, MCP flexion, IP flexion.
        fingers: ``[4, 4]`` index..pinky x (MCP flexion, MCP abduction, PIP, DIP flexion).
    """

    thumb: np.ndarray
    fingers: np.ndarray

    def clipped(self) -> "HandPose":
        """The pose with every angle clipped to :data:`ANGLE_LIMITS`."""
        lim = ANGLE_LIMITS
        t_lo = [lim[k][0] for k in ("thumb_cmc_flex", "thumb_cmc_abd", "thumb_opposition",
                                    "thumb_mcp_flex", "thumb_ip_flex")]
        t_hi = [lim[k][1] for k in ("thumb_cmc_flex", "thumb_cmc_abd", "thumb_opposition",
                                    "thumb_mcp_flex", "thumb_ip_flex")]
        keys = ("finger_mcp_flex", "finger_mcp_abd", "finger_pip_flex", "finger_dip_flex")
        f_lo = np.array([lim[k][0] for k in keys])
        f_hi = np.array([lim[k][1] for k in keys])
        return HandPose(np.clip(self.thumb, t_lo, t_hi), np.clip(self.fingers, f_lo, f_hi))


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


def _flex(deg: float) -> np.ndarray:
    """Rotation taking local x towards local z by ``deg`` (about -y)."""
    return _rot(1, -deg)


def _finger_frame(direction: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Columns (distal, lateral, palmar) with distal along ``direction``."""
    d = direction / np.linalg.norm(direction)
    n = normal - d * (normal @ d)
    n /= np.linalg.norm(n)
    return np.stack([d, np.cross(n, d), n], axis=1)


def hand_joints(shape: HandShape, pose: HandPose) -> np.ndarray:
    """Forward kinematics: the 21 joints in the hand frame.

    Args:
        shape: bone lengths and base positions.
        pose: joint angles (degrees); not clipped here.

    Returns:
        float64 ``[21, 3]`` in the order of :data:`JOINTS`.
    """
    out = np.zeros((21, 3))
    z = np.array([0.0, 0.0, 1.0])
    for f in range(5):
        base = shape.bases[f]
        if f == 0:
            cmc_flex, cmc_abd, opp, mcp, ip = pose.thumb
            # the thumb curls across the palm: towards +y (little finger) and +z (palm)
            frame = _finger_frame(_THUMB_DIR, np.array([0.0, 0.85, 0.5]))
            r = frame @ _rot(2, -cmc_abd) @ _flex(cmc_flex) @ _rot(0, -opp)
            rots = [r, r @ _flex(mcp), r @ _flex(mcp) @ _flex(ip)]
        else:
            mcp, abd, pip, dip = pose.fingers[f - 1]
            frame = _finger_frame(base, z)
            r = frame @ _rot(2, abd) @ _flex(mcp)
            rots = [r, r @ _flex(pip), r @ _flex(pip) @ _flex(dip)]
        p = base.copy()
        out[1 + 4 * f] = p
        for k in range(3):
            p = p + rots[k][:, 0] * shape.phalanges[f, k]
            out[2 + 4 * f + k] = p
    return out


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Lengths of :data:`BONES` from joints ``[..., 21, 3]`` -> ``[..., 20]``."""
    j = np.asarray(joints)
    idx = np.array(BONES)
    return np.linalg.norm(j[..., idx[:, 1], :] - j[..., idx[:, 0], :], axis=-1)


def sample_shape(rng: Optional[SeedLike] = None, scale_range: tuple[float, float] = (0.85, 1.15),
                 bone_jitter: float = 0.04) -> HandShape:
    """A random subject: a global scale times per-bone factors ``1 + N(0, bone_jitter)``.

    Args:
        rng: Generator (advanced), seed, or None for seed 0.
        scale_range: uniform range of the overall scale (default 0.85-1.15).
        bone_jitter: relative standard deviation of each bone length (default 0.04,
            clipped to +-2.5 sigma).
    """
    rng = _as_generator(rng)
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise InvalidInputError(f"scale_range must be 0 < low <= high, got {scale_range!r}")
    if not 0 <= bone_jitter < 0.3:
        raise InvalidInputError(f"bone_jitter must be in [0, 0.3), got {bone_jitter!r}")
    s = float(rng.uniform(lo, hi))
    jit = 1 + np.clip(rng.normal(0, 1, (5, 3)), -2.5, 2.5) * bone_jitter
    base_jit = 1 + np.clip(rng.normal(0, 1, (5, 3)), -2.5, 2.5) * bone_jitter / 2
    return HandShape(_BASES * base_jit * s, _PHALANGES * jit * s, s)


def sample_pose(rng: Optional[SeedLike] = None, gesture_prob: float = 0.6,
                noise_deg: float = 10.0) -> HandPose:
    """A random pose within :data:`ANGLE_LIMITS`.

    With probability ``gesture_prob`` a random :data:`GESTURES` entry plus Gaussian noise of
    ``noise_deg``; otherwise every angle uniform within its limits, with the DIP flexion
    coupled to 2/3 of the PIP flexion (+- 15 degrees). Always clipped to the limits.
    """
    rng = _as_generator(rng)
    if rng.random() < gesture_prob:
        g = GESTURES[list(GESTURES)[int(rng.integers(len(GESTURES)))]]
        thumb = np.array(g[0], float) + rng.normal(0, noise_deg, 5)
        fingers = np.array(g[1:], float) + rng.normal(0, noise_deg, (4, 4))
        fingers[:, 1] = np.array(g[1:], float)[:, 1] + rng.normal(0, noise_deg / 3, 4)
    else:
        lim = ANGLE_LIMITS
        thumb = np.array([rng.uniform(*lim[k]) for k in (
            "thumb_cmc_flex", "thumb_cmc_abd", "thumb_opposition", "thumb_mcp_flex",
            "thumb_ip_flex")])
        fingers = np.stack([rng.uniform(*lim[k], 4) for k in (
            "finger_mcp_flex", "finger_mcp_abd", "finger_pip_flex", "finger_dip_flex")], 1)
        fingers[:, 3] = fingers[:, 2] * 2 / 3 + rng.uniform(-15, 15, 4)
    return HandPose(thumb, fingers).clipped()
