"""Procedural road users: cars, pedestrians and cyclists built from trimesh primitives.

Each builder takes a ``numpy.random.Generator`` and returns a ``trimesh.Trimesh`` in the
object's local frame: front along +x, bounds centred at the origin in x and y, bottom at
z=0. Sizes and shapes vary with the generator (car body styles, people's heights and
builds, walking and pedalling poses). trimesh does the mesh work; the shapes are ours.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import trimesh

from geo3d.sim._mesh_utils import Part, box, limb, merge, rod, rot_x, sphere, to_local_frame, transform

__all__ = ["make_car", "make_pedestrian", "make_cyclist", "OBJECT_BUILDERS"]

# (length, width, height) ranges in metres per body style; KITTI cars average 3.9 x 1.6 x 1.5.
_CAR_STYLES = {
    "hatchback": ((3.6, 4.1), (1.60, 1.75), (1.40, 1.55)),
    "sedan": ((4.3, 4.9), (1.70, 1.85), (1.40, 1.50)),
    "suv": ((4.4, 5.0), (1.80, 2.00), (1.65, 1.85)),
    "van": ((4.8, 5.4), (1.90, 2.05), (1.90, 2.30)),
}


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _wheel(x: float, y: float, radius: float, width: float) -> Part:
    return rod((x, y - width / 2, radius), (x, y + width / 2, radius), radius, sections=12)


@lru_cache(maxsize=8)
def _tire_template(radius_mm: int) -> Part:
    m = trimesh.creation.torus(major_radius=radius_mm / 1000, minor_radius=0.025,
                               major_sections=20, minor_sections=6)
    return np.asarray(m.vertices), np.asarray(m.faces)


def _tire(radius: float) -> Part:
    """A bicycle tyre in the x-y plane (rotate to stand it up), radius rounded to 1 mm."""
    return _tire_template(int(round(radius * 1000)))


def make_car(rng: np.random.Generator) -> trimesh.Trimesh:
    """A car: lower body, a tapered cabin with a glasshouse, and four wheels.

    Args:
        rng: source of the body style and its proportions.
    """
    style = list(_CAR_STYLES)[int(rng.integers(len(_CAR_STYLES)))]
    lr, wr, hr = _CAR_STYLES[style]
    length, width, height = _u(rng, lr), _u(rng, wr), _u(rng, hr)
    wheel_r = float(rng.uniform(0.30, 0.36)) * (1.1 if style in ("suv", "van") else 1.0)
    clearance = wheel_r * 0.55
    body_top = clearance + (height - clearance) * float(rng.uniform(0.45, 0.55))
    if style == "van":
        body_top = clearance + (height - clearance) * 0.4
    body = box((length, width, body_top - clearance), (0, 0, (clearance + body_top) / 2))
    # Cabin: a convex hull of a wide lower rectangle and a narrower, shorter roof.
    front = length / 2 * (0.85 if style == "van" else float(rng.uniform(0.35, 0.5)))
    rear = -length / 2 * (0.95 if style in ("suv", "van") else float(rng.uniform(0.6, 0.8)))
    roof_front = front - (0.15 if style == "van" else float(rng.uniform(0.4, 0.7)))
    roof_rear = rear + (0.05 if style in ("suv", "van") else float(rng.uniform(0.2, 0.5)))
    half_w, roof_half_w = width / 2 * 0.98, width / 2 * float(rng.uniform(0.8, 0.9))
    corners = []
    for x, hw, z in ((front, half_w, body_top), (rear, half_w, body_top),
                     (roof_front, roof_half_w, height), (roof_rear, roof_half_w, height)):
        corners += [(x, -hw, z), (x, hw, z)]
    hull = trimesh.convex.convex_hull(np.array(corners))
    cabin = (np.asarray(hull.vertices), np.asarray(hull.faces))
    axle = length / 2 - wheel_r * float(rng.uniform(1.5, 2.0))
    wheels = [_wheel(sx * axle, sy * (width / 2 - 0.12), wheel_r, 0.22)
              for sx in (-1, 1) for sy in (-1, 1)]
    return to_local_frame(merge([body, cabin, *wheels]))


def _person(rng: np.random.Generator, stature: float, stride: float, seated: bool):
    """Body parts of a person facing +x; feet at z=0 unless seated. Returns (parts, hip)."""
    leg = 0.50 * stature
    hip_z = leg if not seated else 0.0
    shoulder_w = float(rng.uniform(0.20, 0.24)) * stature
    torso = 0.31 * stature
    lean = float(rng.uniform(0.0, 0.1)) if not seated else float(rng.uniform(0.5, 0.8))
    r_limb = float(rng.uniform(0.045, 0.06)) * stature / 1.75
    hip = np.array([0.0, 0.0, hip_z])
    neck = hip + torso * np.array([np.sin(lean), 0.0, np.cos(lean)])
    parts = limb(hip, neck, float(rng.uniform(0.13, 0.17)) * stature / 1.75)
    parts.append(sphere(neck + np.array([0.02, 0, 0.09 * stature]), 0.065 * stature, 1))
    swing = stride * float(rng.uniform(0.6, 1.0))
    for side in (-1, 1):
        shoulder = neck + np.array([0.0, side * shoulder_w / 2, -0.03 * stature])
        hand = shoulder + 0.38 * stature * np.array([side * swing * 0.5, 0.0, -1.0]) / np.hypot(swing * 0.5, 1)
        if seated:
            hand = shoulder + np.array([0.32 * stature, 0.0, -0.12 * stature])
        parts += limb(shoulder, hand, r_limb * 0.8)
        if not seated:
            foot = np.array([side * swing * leg * 0.5, side * 0.09 * stature / 1.75, 0.0 + r_limb])
            parts += limb(hip + np.array([0, side * 0.09, 0]), foot, r_limb)
    return parts, hip


def make_pedestrian(rng: np.random.Generator) -> trimesh.Trimesh:
    """A walking person: legs mid-stride, swinging arms, torso and head; 1.5 to 1.95 m tall.

    Args:
        rng: source of the stature, build and pose.
    """
    stature = float(rng.uniform(1.5, 1.95))
    parts, _ = _person(rng, stature, stride=float(rng.uniform(0.0, 0.6)), seated=False)
    return to_local_frame(merge(parts))


def make_cyclist(rng: np.random.Generator) -> trimesh.Trimesh:
    """A rider on a bicycle: two wheels, a frame, handlebars, and a leaning rider.

    Args:
        rng: source of the wheel size, frame and rider.
    """
    wheel_r = float(rng.uniform(0.31, 0.36))
    base = float(rng.uniform(0.98, 1.12)) / 2
    wheels = []
    for x in (-base, base):
        wheels.append(transform(_tire(wheel_r), rot_x(np.pi / 2), (x, 0.0, wheel_r)))
    saddle = np.array([-0.18, 0.0, wheel_r + float(rng.uniform(0.55, 0.7))])
    crank = np.array([0.0, 0.0, wheel_r])
    bars = np.array([base - 0.12, 0.0, saddle[2] + float(rng.uniform(0.0, 0.12))])
    frame = [rod((-base, 0, wheel_r), crank, 0.02), rod(crank, saddle, 0.02),
             rod(saddle, bars, 0.02), rod(bars, (base, 0, wheel_r), 0.02),
             rod((-base, 0, wheel_r), saddle, 0.015),
             rod(bars + np.array([0, -0.3, 0]), bars + np.array([0, 0.3, 0]), 0.015)]
    stature = float(rng.uniform(1.6, 1.9))
    rider, hip = _person(rng, stature, stride=0.0, seated=True)
    rider = [transform(p, None, saddle - hip + np.array([0, 0, 0.05])) for p in rider]
    phase = float(rng.uniform(0, 2 * np.pi))
    for side in (-1, 1):
        pedal = crank + 0.17 * np.array([np.cos(phase + (side > 0) * np.pi), 0.0,
                                         np.sin(phase + (side > 0) * np.pi)])
        pedal[1] = side * 0.12
        hip_p = saddle + np.array([0.0, side * 0.09, 0.05])
        knee = (hip_p + pedal) / 2 + np.array([0.22, 0.0, 0.1])
        rider += limb(hip_p, knee, 0.055) + limb(knee, pedal, 0.045)
    return to_local_frame(merge([*wheels, *frame, *rider]))


OBJECT_BUILDERS = {"car": make_car, "pedestrian": make_pedestrian, "cyclist": make_cyclist}
