"""What ``geo3d view`` shows: frames from a file, a synthetic data set or a sequence.

Files are read by :mod:`geo3d.io` (point clouds; meshes by extension ``.off``, ``.obj``,
``.stl`` or ``mesh=True``); data sets are geo3d's synthetic ones, generated on the fly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from torch_geometric.data import Data

from geo3d.errors import InvalidInputError

__all__ = ["DATASETS", "load_frames", "subsample"]

DATASETS = ("synthetic-lidar", "synthetic-sequences", "synthetic-shapes")
_MESH_EXT = {".off", ".obj", ".stl"}
_KEYS = ("pos", "x", "x_names", "y", "instance", "face", "boxes", "box_labels", "track_id",
         "ego_pose", "frame", "joints")


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def load_frames(path: Union[str, Path, None] = None, data: Optional[str] = None,
                index: int = 0, split: str = "val", seed: int = 0, length: int = 10,
                format: Optional[str] = None, mesh: bool = False
                ) -> tuple[list[Data], Optional[tuple[str, ...]]]:
    """Load the frames to show, and the class names of their labels.

    Args:
        path: a point-cloud or mesh file (exclusive with ``data``).
        data: one of :data:`DATASETS`.
        index: sample (or sequence) index in the data set (default 0).
        split: data-set split (default ``"val"``).
        seed: data-set seed (default 0).
        length: frames of a sequence (default 10).
        format: point-cloud format of ``path`` (default: from its name).
        mesh: read ``path`` as a mesh whatever its extension.

    Returns:
        ``(frames, names)``: one frame for a file or a sample, ``length`` for a sequence;
        ``names`` is ``None`` for files (the simulator's classes apply to their labels).
    """
    if (path is None) == (data is None):
        raise InvalidInputError("give either a file PATH or --data, not both and not neither")
    if path is not None:
        from geo3d.io import read_mesh, read_point_cloud

        path = Path(path)
        if mesh or path.suffix.lower() in _MESH_EXT:
            return [read_mesh(path)], None
        return [read_point_cloud(path, format=format)], None
    if data not in DATASETS:
        raise InvalidInputError(f"--data must be one of {DATASETS}, got {data!r}")
    index = _check_int(index, "index", 0)
    if data == "synthetic-lidar":
        from geo3d.datasets import SyntheticLidar
        return [SyntheticLidar(split, index + 1, seed=seed)[index]], None
    if data == "synthetic-sequences":
        from geo3d.datasets import SyntheticSequences
        ds = SyntheticSequences(split, index + 1, _check_int(length, "length", 1), seed=seed)
        return list(ds.iter_frames(index)), None
    from geo3d.datasets import SyntheticShapes
    ds = SyntheticShapes(split, index + 1, seed=seed, task="part_segmentation")
    return [ds[index]], tuple(ds.PART_NAMES)


def subsample(frames: Sequence[Data], num_points: Optional[int], seed: int = 0) -> list[Data]:
    """The frames with at most ``num_points`` points each (a fixed random subset, as in
    training; per-point attributes follow), via :class:`geo3d.datasets.SubsampledPoints`."""
    from geo3d.datasets import SubsampledPoints

    frames = list(frames)
    if num_points is None or any(getattr(f, "face", None) is not None for f in frames):
        return frames
    keys = tuple(k for k in _KEYS if any(k in f for f in frames))
    view = SubsampledPoints(frames, num_points, seed, keys=keys)
    return [view[i] for i in range(len(frames))]
