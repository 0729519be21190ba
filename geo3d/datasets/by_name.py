"""Datasets by name, for the CLI, the benchmark suite and the model zoo's regression tests.

``make_dataset("synthetic-lidar", "test", 4, num_points=16384)`` builds a dataset and says
what a model needs to know about it (input channels, class names). Each builder is
registered once under its CLI name with :func:`register_dataset`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional

from torch.utils.data import Dataset

from geo3d.errors import InvalidInputError

__all__ = ["NamedDataset", "make_dataset", "list_datasets", "register_dataset"]


@dataclass(frozen=True)
class NamedDataset:
    """A dataset built by name, with what a model needs to know about it.

    Attributes:
        dataset: The torch Dataset of ``Data``.
        in_channels: Width of ``data.x`` (0: the model uses ``pos`` only).
        class_names: Names of the label classes (per point or per sample).
    """

    dataset: Dataset
    in_channels: int
    class_names: list


_BUILDERS: dict[str, Callable[..., NamedDataset]] = {}


def register_dataset(name: str) -> Callable:
    """Register a builder ``(split, size, seed, num_points, task) -> NamedDataset``."""
    def decorator(builder: Callable[..., NamedDataset]) -> Callable[..., NamedDataset]:
        if name in _BUILDERS:
            raise InvalidInputError(f"dataset name {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder
    return decorator


def list_datasets() -> list[str]:
    """The registered dataset names."""
    return sorted(_BUILDERS)


def make_dataset(name: str, split: str, size: int, *, seed: int = 0,
                 num_points: Optional[int] = None, task: str = "segmentation",
                 **options: Any) -> NamedDataset:
    """Build a registered dataset.

    Args:
        name: One of :func:`list_datasets`, e.g. "synthetic-lidar".
        split: "train", "val" or "test".
        size: Number of samples.
        seed: Seed of the data. Default 0.
        num_points: Points per sample (a fixed random subset, or points sampled); None:
            the dataset's own default.
        task: The model task the samples are for, e.g. "segmentation". Default
            "segmentation".
        **options: Builder-specific options.

    Raises:
        InvalidInputError: Unknown name, or a task the dataset has no labels for.
    """
    if name not in _BUILDERS:
        raise InvalidInputError(f"unknown dataset {name!r}; known: {list_datasets()}")
    return _BUILDERS[name](split=split, size=size, seed=seed, num_points=num_points, task=task,
                           **options)


def _choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


@register_dataset("synthetic-lidar")
def _synthetic_lidar(split: str, size: int, seed: int, num_points: Optional[int],
                     task: str, features: str = "intensity") -> NamedDataset:
    """Options: ``features`` "intensity" (``x`` [N, 1], default) or "lidar" (``x`` =
    :func:`geo3d.datasets.features.lidar_features`, [N, 3]; segmentation only)."""
    from geo3d.datasets.features import lidar_features
    from geo3d.datasets.subsample import SubsampledPoints
    from geo3d.datasets.synthetic_lidar import SyntheticLidar
    from geo3d.sim.classes import CLASSES, OBJECT_CLASSES

    if task not in ("segmentation", "detection"):
        raise InvalidInputError(f"synthetic-lidar has per-point labels and boxes, not labels "
                                f"for {task!r}: use a segmentation or detection model")
    _choice("features", features, ("intensity", "lidar"))
    frames = SyntheticLidar(split, size, seed=seed, cache=True)
    if task == "detection":  # whole frames: detectors thin the points themselves
        if features != "intensity":
            raise InvalidInputError("synthetic-lidar detection frames have features='intensity'")
        return NamedDataset(frames, 1, list(OBJECT_CLASSES))
    transform = lidar_features if features == "lidar" else None
    return NamedDataset(SubsampledPoints(frames, num_points, seed, transform=transform),
                        3 if transform else 1, list(CLASSES))


@register_dataset("synthetic-shapes")
def _synthetic_shapes(split: str, size: int, seed: int, num_points: Optional[int],
                      task: str) -> NamedDataset:
    from geo3d.datasets.subsample import SubsampledPoints
    from geo3d.datasets.synthetic_shapes import SyntheticShapes

    if task not in ("classification", "segmentation"):
        raise InvalidInputError(f"synthetic-shapes has class and part labels, not {task!r}")
    shapes_task = "classification" if task == "classification" else "part_segmentation"
    ds = SyntheticShapes(split, size, num_points=num_points or 1024, seed=seed,
                         task=shapes_task, cache=True)
    names = ds.CLASS_NAMES if shapes_task == "classification" else ds.PART_NAMES
    return NamedDataset(SubsampledPoints(ds, None, seed), 3, list(names))


@register_dataset("synthetic-meshes")
def _synthetic_meshes(split: str, size: int, seed: int, num_points: Optional[int], task: str,
                      target: str = "correspondence", retriangulate: bool = False,
                      features: str = "curvature") -> NamedDataset:
    """Per-vertex labels of posed humanoids. Options: ``target`` "correspondence" (template
    vertex ids, default) or "part"; ``retriangulate`` (default False); ``features``
    "curvature" (default, 2 columns), "hks" (16) or "none"."""
    from geo3d.datasets.synthetic_meshes import SyntheticMeshes

    if task != "segmentation":
        raise InvalidInputError(f"synthetic-meshes has per-vertex labels, not {task!r}: use a "
                                f"per-vertex model (gem_corr, gem_seg)")
    if num_points is not None:
        raise InvalidInputError("synthetic-meshes keeps every vertex: num_points must be None")
    _choice("target", target, ("correspondence", "part"))
    ds = SyntheticMeshes(split, size, seed=seed, retriangulate=retriangulate, cache=True,
                         features=features,
                         task="correspondence" if target == "correspondence" else "part_segmentation")
    names = ([str(i) for i in range(ds.num_vertices)] if target == "correspondence"
             else list(ds.PART_NAMES))
    return NamedDataset(ds, ds.num_features, names)


@register_dataset("synthetic-hands")
def _synthetic_hands(split: str, size: int, seed: int, num_points: Optional[int], task: str,
                     width: int = 320, height: int = 240) -> NamedDataset:
    """Whole depth frames of a hand, ``joints`` [21, 3]. Options: the depth image ``width``
    and ``height`` (default 320 x 240; the field of view stays 60 degrees)."""
    from geo3d.datasets.synthetic_hands import SyntheticHands
    from geo3d.sim.hand import JOINTS
    from geo3d.sim.hand_render import HandSceneConfig

    if task != "hand_pose":
        raise InvalidInputError(f"synthetic-hands has hand joints, not labels for {task!r}: "
                                f"use a hand_pose model")
    if num_points is not None:
        raise InvalidInputError("synthetic-hands frames keep every pixel: num_points must be None")
    base = HandSceneConfig().camera
    scale = width / base.width if isinstance(width, int) and width > 0 else 1.0
    camera = dataclasses.replace(base, width=width, height=height, fx=base.fx * scale,
                                 fy=base.fy * scale, cx=None, cy=None)
    ds = SyntheticHands(split, size, seed=seed, config=HandSceneConfig(camera=camera),
                        cache=True, with_depth=False)
    return NamedDataset(ds, 0, list(JOINTS))
