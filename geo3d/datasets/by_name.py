"""Datasets by name, for the CLI, the benchmark suite and the model zoo's regression tests.

``make_dataset("synthetic-lidar", "test", 4, num_points=16384)`` builds a dataset and says
what a model needs to know about it (input channels, class names). Each builder is
registered once under its CLI name with :func:`register_dataset`.
"""

from __future__ import annotations

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


@register_dataset("synthetic-lidar")
def _synthetic_lidar(split: str, size: int, seed: int, num_points: Optional[int],
                     task: str) -> NamedDataset:
    from geo3d.datasets.subsample import SubsampledPoints
    from geo3d.datasets.synthetic_lidar import SyntheticLidar
    from geo3d.sim.classes import CLASSES, OBJECT_CLASSES

    if task not in ("segmentation", "detection"):
        raise InvalidInputError(f"synthetic-lidar has per-point labels and boxes, not labels "
                                f"for {task!r}: use a segmentation or detection model")
    frames = SyntheticLidar(split, size, seed=seed, cache=True)
    if task == "detection":  # whole frames: detectors thin the points themselves
        return NamedDataset(frames, 1, list(OBJECT_CLASSES))
    return NamedDataset(SubsampledPoints(frames, num_points, seed), 1, list(CLASSES))


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
