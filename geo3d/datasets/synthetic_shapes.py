"""SyntheticShapes: ModelNet-like procedural shapes with part labels (offline, deterministic).

Shapes come from :mod:`geo3d.sim.shapes` (trimesh primitives; trimesh samples the
surface by area). Each item is seeded by ``numpy.random.SeedSequence([seed, split_code,
index])`` with distinct codes for train, val and test, so items do not depend on access
order or worker count and the splits never share a shape. Item ``i`` is of class
``i % num_classes``: every prefix of the dataset is balanced.

Conventions:
    - Canonical frame: up is +z, front is +x (see :mod:`geo3d.sim.shapes`). ``rotate``
      applies a random rotation after sampling and normalisation: ``"z"`` about +z,
      ``"so3"`` uniform over SO(3). The rotation has its own random stream, so an item with
      ``rotate="so3"`` is exactly ``R @`` the same item with ``rotate="none"``.
    - ``pos`` is centred on the mean of the sampled points and scaled so that the farthest
      point is at distance 1 (PointNet's ``pc_normalize``).
    - ``x`` holds the unit outward surface normals (rotated with ``pos``), or is None with
      ``normals=False``.
    - Part ids are global, ShapeNetPart-style: each class owns a contiguous range
      (:attr:`SyntheticShapes.CLASS_PARTS`), named in :attr:`SyntheticShapes.PART_NAMES`.
    - ``task="classification"``: ``y`` [1] is the class (a Batch concatenates it to [B]) and
      ``part`` [N] the part ids. ``task="part_segmentation"``: ``y`` [N] is the part ids (the
      per-point target the segmentation models read) and ``category`` [1] the class.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.datasets._common import (_SPLIT_CODES, CachedItems, check_bool, check_choice, check_int,
                                    normalise_unit_sphere, random_rotation)
from geo3d.sim.shapes import SHAPE_BUILDERS, SHAPE_PARTS, sample_labelled_surface

__all__ = ["SyntheticShapes"]

_TASKS = ("classification", "part_segmentation")
_ROTATIONS = ("none", "z", "so3")


def _part_ranges(parts: dict[str, tuple[str, ...]]) -> dict[str, tuple[int, ...]]:
    ranges, start = {}, 0
    for name, names in parts.items():
        ranges[name] = tuple(range(start, start + len(names)))
        start += len(names)
    return ranges


class SyntheticShapes(CachedItems):
    """Procedural shapes of 8 classes, sampled as point clouds with part labels.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint shapes).
        size: number of shapes (>= 1).
        num_points: points sampled on each surface (default 1024).
        seed: base seed (default 0).
        task: ``"classification"`` (default; ``y`` is the class) or
            ``"part_segmentation"`` (``y`` is the per-point part id, ``category`` the class).
        rotate: ``"none"`` (default, canonical frame), ``"z"`` or ``"so3"``: a random
            rotation per item, e.g. for a rotated test set.
        normals: put the unit surface normals in ``x`` (default True); False gives
            ``x = None``.
        cache: keep generated items in memory and hand out copies (default False).

    Shapes:
        ``dataset[i]`` is a ``Data`` with ``pos`` [N, 3] float32 and ``x`` [N, 3] float32
        (or None); classification: ``y`` [1] long and ``part`` [N] long;
        part_segmentation: ``y`` [N] long and ``category`` [1] long.
    """

    CLASS_NAMES: tuple[str, ...] = tuple(SHAPE_PARTS)
    CLASS_PARTS: dict[str, tuple[int, ...]] = _part_ranges(SHAPE_PARTS)
    PART_NAMES: tuple[str, ...] = tuple(f"{c}/{p}" for c, ps in SHAPE_PARTS.items() for p in ps)
    NUM_CLASSES: int = len(CLASS_NAMES)
    NUM_PARTS: int = len(PART_NAMES)

    def __init__(self, split: str, size: int, num_points: int = 1024, seed: int = 0,
                 task: str = "classification", rotate: str = "none", normals: bool = True,
                 cache: bool = False) -> None:
        self.split = check_choice("split", split, tuple(_SPLIT_CODES))
        self.size = check_int("size", size, 1)
        self.num_points = check_int("num_points", num_points, 1)
        self.seed = check_int("seed", seed, 0)
        self.task = check_choice("task", task, _TASKS)
        self.rotate = check_choice("rotate", rotate, _ROTATIONS)
        self.normals = check_bool("normals", normals)
        super().__init__(check_bool("cache", cache))

    @property
    def num_classes(self) -> int:
        """The number of targets of the task: classes, or parts for part segmentation."""
        return self.NUM_CLASSES if self.task == "classification" else self.NUM_PARTS

    def __len__(self) -> int:
        return self.size

    def _load(self, index: int) -> Data:
        shape_seq, rot_seq = np.random.SeedSequence(
            [self.seed, _SPLIT_CODES[self.split], index]).spawn(2)
        rng = np.random.default_rng(shape_seq)
        label = index % self.NUM_CLASSES
        name = self.CLASS_NAMES[label]
        points, normals, part = sample_labelled_surface(SHAPE_BUILDERS[name](rng), self.num_points, rng)
        points = normalise_unit_sphere(points)
        rot = random_rotation(self.rotate, np.random.default_rng(rot_seq))
        if rot is not None:
            points, normals = points @ rot.T, normals @ rot.T
        part = torch.from_numpy(part + self.CLASS_PARTS[name][0])
        data = Data(pos=torch.from_numpy(points.astype(np.float32)),
                    x=torch.from_numpy(normals.astype(np.float32)) if self.normals else None)
        label = torch.tensor([label], dtype=torch.long)
        if self.task == "classification":
            data.y, data.part = label, part
        else:
            data.y, data.category = part, label
        return data

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, size={self.size}, "
                f"num_points={self.num_points}, task={self.task!r}, rotate={self.rotate!r})")
