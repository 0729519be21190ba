"""Procedural household and vehicle shapes with part labels, for shape classification.

Each builder takes a ``numpy.random.Generator`` and returns a :class:`LabelledMesh`: a
triangle soup whose faces carry a part index local to the shape class (the names are
:data:`SHAPE_PARTS`). Proportions, styles and optional pieces vary with the generator, so
no two instances are alike. Canonical frame: up is +z, front is +x (a chair faces +x with
its back at -x, an airplane and a car point their nose along +x, a guitar stands on its
body with the neck up along +z and the strings facing +x, a mug's handle is on +x).

trimesh builds the primitives (through :mod:`geo3d.sim._mesh_utils`) and samples the
surface (:func:`trimesh.sample.sample_surface`, area weighted); the shapes are ours.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import trimesh

from geo3d.sim._mesh_utils import Part, box, merge, rod, rot_x, rot_z, sphere, transform

__all__ = ["LabelledMesh", "SHAPE_PARTS", "SHAPE_BUILDERS", "sample_labelled_surface"]


class LabelledMesh(NamedTuple):
    """A triangle mesh with a part index per face.

    Attributes:
        mesh: the ``trimesh.Trimesh`` (not processed: vertices are not merged).
        face_part: ``[T]`` int64 part index of each face, local to the shape class.
    """

    mesh: trimesh.Trimesh
    face_part: np.ndarray


# Part names per class, in local part order; classes sorted by name like ShapeNetPart.
SHAPE_PARTS: dict[str, tuple[str, ...]] = {
    "airplane": ("fuselage", "wing", "tail", "engine"),
    "bottle": ("body", "neck", "cap"),
    "car": ("body", "cabin", "wheel"),
    "chair": ("seat", "back", "leg", "arm"),
    "guitar": ("body", "neck", "head"),
    "lamp": ("base", "pole", "shade"),
    "mug": ("body", "handle"),
    "table": ("top", "leg"),
}


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _frustum(z0: float, z1: float, r0: float, r1: float, center=(0.0, 0.0), sections: int = 16) -> Part:
    """A capped truncated cone about the vertical line through ``center``, radius r0 at z0, r1 at z1."""
    v, f = rod((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 1.0, sections)
    t = v[:, 2:3]
    v = np.concatenate([v[:, :2] * (r0 + (r1 - r0) * t) + np.asarray(center, float),
                        z0 + (z1 - z0) * t], axis=1)
    return v, f


def _disc(z0: float, z1: float, radius: float, center=(0.0, 0.0), sections: int = 24) -> Part:
    return rod((center[0], center[1], z0), (center[0], center[1], z1), radius, sections)


def _legs(rng: np.random.Generator, half_x: float, half_y: float, top: float) -> list[Part]:
    """Four legs under a rectangle of half sizes (half_x, half_y) ending at height ``top``."""
    thick = _u(rng, 0.025, 0.045)
    inset = _u(rng, 0.0, 0.06)
    splay = _u(rng, 0.0, 0.05) if rng.random() < 0.3 else 0.0
    square = rng.random() < 0.5
    legs = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (half_x - inset - thick), sy * (half_y - inset - thick)
            foot = (x + sx * splay, y + sy * splay, 0.0)
            if square and splay == 0.0:
                legs.append(box((2 * thick, 2 * thick, top), (x, y, top / 2)))
            else:
                legs.append(rod(foot, (x, y, top), thick, 8))
    return legs


def _pedestal(rng: np.random.Generator, top: float, reach: float) -> list[Part]:
    """A central column on a star of feet (office chair) or a round foot (cafe table)."""
    column = _u(rng, 0.025, 0.05)
    parts = [rod((0, 0, 0.03), (0, 0, top), column, 12)]
    if rng.random() < 0.5:
        n = int(rng.integers(4, 6))
        for k in range(n):
            parts.append(box((reach, 0.05, 0.03), (reach / 2, 0, 0.015), rot_z(2 * np.pi * k / n)))
    else:
        parts.append(_disc(0.0, 0.03, reach, sections=24))
    return parts


def make_chair(rng: np.random.Generator) -> list[tuple[Part, int]]:
    """A chair facing +x: seat, back (tilted), four legs or a pedestal, optional arms."""
    depth, width = _u(rng, 0.40, 0.60), _u(rng, 0.40, 0.60)
    height, thick = _u(rng, 0.38, 0.50), _u(rng, 0.03, 0.08)
    parts = [(box((depth, width, thick), (0, 0, height - thick / 2)), 0)]
    back_h, back_t = _u(rng, 0.30, 0.70), _u(rng, 0.03, 0.06)
    tilt = _u(rng, 0.0, 0.3)
    back = box((back_t, width * _u(rng, 0.8, 1.0), back_h), (0, 0, back_h / 2), _rot_y(-tilt))
    parts.append((transform(back, None, (-depth / 2 + back_t / 2, 0, height)), 1))
    legs = (_legs(rng, depth / 2, width / 2, height - thick) if rng.random() < 0.7
            else _pedestal(rng, height - thick, max(depth, width) * 0.55))
    parts += [(leg, 2) for leg in legs]
    if rng.random() < 0.5:
        arm_z, arm_w = height + _u(rng, 0.15, 0.25), _u(rng, 0.04, 0.08)
        for sy in (-1, 1):
            y = sy * (width / 2 + arm_w / 2)
            parts.append((box((depth * 0.9, arm_w, 0.04), (0, y, arm_z)), 3))
            parts.append((rod((depth * 0.35, y, height - thick), (depth * 0.35, y, arm_z), 0.02, 8), 3))
    return parts


def make_table(rng: np.random.Generator) -> list[tuple[Part, int]]:
    """A table: rectangular or round top on four legs or a pedestal."""
    height, thick = _u(rng, 0.45, 0.80), _u(rng, 0.03, 0.07)
    if rng.random() < 0.7:
        length, width = _u(rng, 0.8, 1.8), _u(rng, 0.5, 1.0)
        parts = [(box((length, width, thick), (0, 0, height - thick / 2)), 0)]
        half_x, half_y, reach = length / 2, width / 2, min(length, width) * 0.35
    else:
        radius = _u(rng, 0.35, 0.6)
        parts = [(_disc(height - thick, height, radius, sections=32), 0)]
        half_x = half_y = radius * 0.7
        reach = radius * 0.6
    legs = (_legs(rng, half_x, half_y, height - thick) if rng.random() < 0.65
            else _pedestal(rng, height - thick, reach))
    return parts + [(leg, 1) for leg in legs]


def make_lamp(rng: np.random.Generator) -> list[tuple[Part, int]]:
    """A lamp: round or square base, a straight or bent pole, a conical or globe shade."""
    base_r, base_h = _u(rng, 0.08, 0.16), _u(rng, 0.02, 0.05)
    base = (_disc(0, base_h, base_r) if rng.random() < 0.6
            else box((2 * base_r, 2 * base_r, base_h), (0, 0, base_h / 2)))
    pole_r, pole_h = _u(rng, 0.012, 0.022), _u(rng, 0.3, 0.8)
    top = np.array([0.0, 0.0, base_h + pole_h])
    pole = [rod((0, 0, base_h), top, pole_r, 8)]
    if rng.random() < 0.4:  # desk lamp: a second, leaning segment
        lean = _u(rng, 0.4, 1.0)
        end = top + _u(rng, 0.15, 0.35) * np.array([np.sin(lean), 0.0, np.cos(lean)])
        pole += [rod(top, end, pole_r, 8), sphere(top, pole_r * 1.3, 0)]
        top = end
    shade_h = _u(rng, 0.12, 0.25)
    if rng.random() < 0.7:
        r_low, r_high = _u(rng, 0.10, 0.22), _u(rng, 0.05, 0.12)
        shade = _frustum(top[2] - shade_h * 0.6, top[2] + shade_h * 0.4, r_low, r_high, top[:2])
    else:
        shade = sphere(top + np.array([0, 0, shade_h * 0.3]), shade_h * 0.6, 2)
    return [(base, 0)] + [(p, 1) for p in pole] + [(shade, 2)]


def make_airplane(rng: np.random.Generator) -> list[tuple[Part, int]]:
    """An airplane pointing +x: fuselage, swept wings, tail plane and fin, 2 or 4 engines."""
    length, radius = _u(rng, 1.0, 1.6), _u(rng, 0.05, 0.10)
    parts = [(sphere((0, 0, 0), 1.0, 2, (length / 2, radius, radius)), 0)]
    span, chord = _u(rng, 0.8, 1.5) * length, _u(rng, 0.12, 0.25)
    sweep, dihedral = _u(rng, 0.0, 0.6), _u(rng, -0.05, 0.12)
    wing_x, wing_z = _u(rng, -0.1, 0.1) * length, _u(rng, -0.5, 0.3) * radius
    half = span / 2
    for side in (-1, 1):
        rot = rot_z(-side * sweep) @ rot_x(side * dihedral)
        wing = box((chord, half, 0.02), (0, side * half / 2, 0), rot)
        parts.append((transform(wing, None, (wing_x, 0, wing_z)), 1))
    tail_x = -length / 2 + 0.06
    tail_span, tail_chord = half * _u(rng, 0.3, 0.45), chord * _u(rng, 0.6, 0.9)
    for side in (-1, 1):
        plane = box((tail_chord, tail_span, 0.015), (0, side * tail_span / 2, 0), rot_z(-side * sweep))
        parts.append((transform(plane, None, (tail_x + tail_chord / 2, 0, radius * 0.3)), 2))
    fin_h = _u(rng, 0.15, 0.3)
    fin = box((tail_chord * 1.2, 0.015, fin_h), (0, 0, fin_h / 2), _rot_y(_u(rng, 0.2, 0.6)))
    parts.append((transform(fin, None, (tail_x + tail_chord / 2, 0, radius * 0.5)), 2))
    engine_r, engine_l = _u(rng, 0.035, 0.06), _u(rng, 0.15, 0.28)
    stations = (0.35,) if rng.random() < 0.6 else (0.3, 0.65)
    for t in stations:
        for side in (-1, 1):
            y = side * half * t
            x = wing_x - abs(y) * np.tan(sweep) + chord * 0.3
            z = wing_z + abs(y) * np.tan(dihedral) - engine_r - 0.01
            parts.append((rod((x - engine_l / 2, y, z), (x + engine_l / 2, y, z), engine_r, 12), 3))
    return parts


def make_mug(rng: np.random.Generator) -> list[tuple[Part, int]]:
    """A mug: a straight or tapered body and a C-shaped handle on +x."""
    radius, height = _u(rng, 0.035, 0.06), _u(rng, 0.07, 0.13)
    taper = _u(rng, 0.8, 1.0) if rng.random() < 0.4 else 1.0
    parts = [(_frustum(0.0, height, radius * taper, radius, sections=24), 0)]
    reach, span = _u(rng, 0.02, 0.04), height * _u(rng, 0.5, 0.8)
    thick = _u(rng, 0.006, 0.011)
    angles = np.linspace(-np.pi / 2, np.pi / 2, 7)
    arc = np.stack([radius - 0.005 + reach * np.cos(angles), np.zeros(7),
                    height / 2 + span / 2 * np.sin(angles)], axis=1)
    for p0, p1 in zip(arc[:-1], arc[1:]):
        parts += [(rod(p0, p1, thick, 8), 1), (sphere(p1, thick, 0), 1)]
    return parts


def make_bottle(rng: np.random.Generator) -> list[tuple[Part, int]]:
    """A bottle: a body with a shoulder, a neck and a cap."""
    radius, height = _u(rng, 0.03, 0.06), _u(rng, 0.12, 0.28)
    neck_r, shoulder = radius * _u(rng, 0.3, 0.5), _u(rng, 0.02, 0.06)
    neck_h, cap_h = _u(rng, 0.03, 0.08), _u(rng, 0.015, 0.03)
    parts = [(_disc(0.0, height, radius, sections=20), 0),
             (_frustum(height, height + shoulder, radius, neck_r, sections=20), 0),
             (_disc(height + shoulder, height + shoulder + neck_h, neck_r, sections=16), 1)]
    z = height + shoulder + neck_h
    parts.append((_disc(z, z + cap_h, neck_r * 1.15, sections=16), 2))
    return parts


def make_guitar(rng: np.random.Generator) -> list[tuple[Part, int]]:
    """An upright guitar, strings facing +x: a two-bout body, a neck and a tilted head."""
    thick, lower = _u(rng, 0.05, 0.11), _u(rng, 0.17, 0.22)
    upper = lower * _u(rng, 0.7, 0.85)
    parts = [(sphere((0, 0, lower), 1.0, 2, (thick / 2, lower, lower)), 0),
             (sphere((0, 0, 2 * lower + upper * 0.6), 1.0, 2, (thick / 2, upper, upper)), 0)]
    neck_z0, neck_l = 2 * lower + upper * 1.4, _u(rng, 0.4, 0.55)
    neck_w = _u(rng, 0.045, 0.06)
    parts.append((box((0.025, neck_w, neck_l), (0, 0, neck_z0 + neck_l / 2)), 1))
    head_l = _u(rng, 0.14, 0.2)
    head_w, head_tilt = neck_w * _u(rng, 1.2, 1.6), _u(rng, 0.0, 0.3)
    head = box((0.02, head_w, head_l), (0, 0, head_l / 2), _rot_y(-head_tilt))
    parts.append((transform(head, None, (0, 0, neck_z0 + neck_l)), 2))
    return parts


def make_toy_car(rng: np.random.Generator) -> list[tuple[Part, int]]:
    """A car pointing +x: a body box, a tapered cabin and four wheels."""
    length, width = _u(rng, 3.6, 5.2), _u(rng, 1.6, 2.0)
    wheel_r = _u(rng, 0.30, 0.40)
    clear = wheel_r * 0.55
    body_top = clear + _u(rng, 0.5, 0.8)
    parts = [(box((length, width, body_top - clear), (0, 0, (clear + body_top) / 2)), 0)]
    front, rear = length / 2 * _u(rng, 0.2, 0.5), -length / 2 * _u(rng, 0.6, 0.95)
    roof_front, roof_rear = front - _u(rng, 0.3, 0.7), rear + _u(rng, 0.05, 0.4)
    roof, hw, rhw = body_top + _u(rng, 0.5, 0.9), width / 2 * 0.97, width / 2 * _u(rng, 0.78, 0.9)
    # The cabin is a unit box whose corners move to the floor and roof rectangles.
    v, f = box((1.0, 1.0, 1.0))
    top = v[:, 2] > 0
    x = np.where(v[:, 0] > 0, np.where(top, roof_front, front), np.where(top, roof_rear, rear))
    y = np.sign(v[:, 1]) * np.where(top, rhw, hw)
    parts.append(((np.stack([x, y, np.where(top, roof, body_top)], axis=1), f), 1))
    axle = length / 2 - wheel_r * _u(rng, 1.4, 2.0)
    for sx in (-1, 1):
        for sy in (-1, 1):
            y = sy * (width / 2 - 0.1)
            hub = np.array([sx * axle, y, wheel_r])
            parts.append((rod(hub - (0, 0.12, 0), hub + (0, 0.12, 0), wheel_r, 16), 2))
    return parts


def _labelled(builder: Callable[[np.random.Generator], list[tuple[Part, int]]]):
    def build(rng: np.random.Generator) -> LabelledMesh:
        parts = builder(rng)
        mesh = merge([p for p, _ in parts])
        face_part = np.concatenate([np.full(len(p[1]), k, np.int64) for p, k in parts])
        return LabelledMesh(mesh, face_part)

    build.__name__ = builder.__name__
    build.__doc__ = builder.__doc__
    return build


SHAPE_BUILDERS: dict[str, Callable[[np.random.Generator], LabelledMesh]] = {
    "airplane": _labelled(make_airplane),
    "bottle": _labelled(make_bottle),
    "car": _labelled(make_toy_car),
    "chair": _labelled(make_chair),
    "guitar": _labelled(make_guitar),
    "lamp": _labelled(make_lamp),
    "mug": _labelled(make_mug),
    "table": _labelled(make_table),
}


def sample_labelled_surface(shape: LabelledMesh, count: int, rng: np.random.Generator
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``count`` points uniformly by area on the surface of a labelled mesh.

    Args:
        shape: the mesh and its face parts.
        count: number of points (>= 1).
        rng: source of the samples (the result is a function of its state).

    Returns:
        ``(points [count, 3] float64, normals [count, 3] float64 unit face normals,
        part [count] int64)``.
    """
    points, face = trimesh.sample.sample_surface(shape.mesh, count, seed=rng)
    return points, shape.mesh.face_normals[face], shape.face_part[face]
