"""Procedural static scenery: buildings, walls, poles, trees and bushes.

Each builder takes a ``numpy.random.Generator`` and returns a ``trimesh.Trimesh`` in its
local frame: footprint centred at the origin, bottom at z=0, long side along +x.
``STRUCTURE_CLASSES`` maps each builder's name to its semantic class in ``CLASSES``.
"""

from __future__ import annotations

import numpy as np
import trimesh

from geo3d.sim._mesh_utils import box, merge, rod, sphere, to_local_frame

__all__ = ["make_building", "make_wall", "make_pole", "make_tree", "make_bush",
           "STRUCTURE_BUILDERS", "STRUCTURE_CLASSES"]


def make_building(rng: np.random.Generator) -> trimesh.Trimesh:
    """A building: a block, sometimes with a set-back upper storey or a roof box."""
    l, w, h = rng.uniform(8, 25), rng.uniform(6, 14), rng.uniform(4, 18)
    parts = [box((l, w, h), (0, 0, h / 2))]
    if rng.random() < 0.5:
        sl, sw, sh = l * rng.uniform(0.4, 0.8), w * rng.uniform(0.4, 0.8), rng.uniform(2, 6)
        parts.append(box((sl, sw, sh), (0, 0, h + sh / 2)))
    return to_local_frame(merge(parts))


def make_wall(rng: np.random.Generator) -> trimesh.Trimesh:
    """A wall or fence segment: long, thin, 1 to 3 m high."""
    l, w, h = rng.uniform(4, 20), rng.uniform(0.15, 0.4), rng.uniform(1.0, 3.0)
    return to_local_frame(merge([box((l, w, h), (0, 0, h / 2))]))


def make_pole(rng: np.random.Generator) -> trimesh.Trimesh:
    """A street-light or sign pole, sometimes with an arm or a sign plate."""
    r, h = rng.uniform(0.06, 0.15), rng.uniform(3.0, 8.0)
    parts = [rod((0, 0, 0), (0, 0, h), r, sections=10)]
    kind = rng.integers(3)
    if kind == 1:  # a lamp arm
        parts.append(rod((0, 0, h - 0.1), (rng.uniform(1.0, 2.5), 0, h - 0.1), r * 0.6))
    elif kind == 2:  # a sign plate
        parts.append(box((0.05, rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9)),
                         (r + 0.03, 0, h - 0.5)))
    return to_local_frame(merge(parts))


def make_tree(rng: np.random.Generator) -> trimesh.Trimesh:
    """A tree: a trunk and one to three lumpy canopy ellipsoids."""
    trunk_h, trunk_r = rng.uniform(1.5, 4.0), rng.uniform(0.1, 0.3)
    parts = [rod((0, 0, 0), (0, 0, trunk_h + 0.5), trunk_r, sections=10)]
    crown = rng.uniform(1.5, 4.0)
    for _ in range(int(rng.integers(1, 4))):
        centre = np.array([rng.normal(0, crown * 0.25), rng.normal(0, crown * 0.25),
                           trunk_h + crown * rng.uniform(0.6, 1.0)])
        scale = rng.uniform(0.7, 1.1, size=3)
        v, f = sphere(centre, crown * rng.uniform(0.7, 1.0), 2, scale)
        v = v + rng.normal(0, 0.06 * crown, size=v.shape)  # lumpy foliage
        parts.append((v, f))
    return to_local_frame(merge(parts))


def make_bush(rng: np.random.Generator) -> trimesh.Trimesh:
    """A bush: a flattened, lumpy ellipsoid 0.5 to 1.5 m high."""
    size = rng.uniform(0.5, 1.5)
    v, f = sphere((0, 0, 0), size, 1, (rng.uniform(1.0, 2.0), rng.uniform(0.8, 1.2), 0.7))
    v = v + rng.normal(0, 0.05 * size, size=v.shape)
    return to_local_frame(merge([(v, f)]))


STRUCTURE_BUILDERS = {"building": make_building, "wall": make_wall, "pole": make_pole,
                      "tree": make_tree, "bush": make_bush}
STRUCTURE_CLASSES = {"building": "building", "wall": "wall", "pole": "pole",
                     "tree": "vegetation", "bush": "vegetation"}
