"""SemanticKITTI (Behley et al., ICCV 2019) per-point labels in the published layout.

Written here: the layout and binary formats are simple; scans and labels are read with
:func:`geo3d.io.read_point_cloud` and :func:`geo3d.io.read_labels`. The label mapping is
the benchmark's ``learning_map`` of ``semantic-kitti.yaml`` (19 classes), shifted down by
one so that class ids are 0..18 and "unlabeled" (with outlier, other-structure and
other-object) becomes -1, the ignore index. Moving classes map to their static class.

Layout::

    root/sequences/SS/velodyne/NNNNNN.bin   float32 x, y, z, remission
    root/sequences/SS/labels/NNNNNN.label   uint32: semantic id (low 16 bits), instance (high 16)

Test sequences (11-21) have no ``labels/`` folder; their items have no ``y``/``instance``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence, Union

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import read_labels, read_point_cloud

__all__ = [
    "SemanticKitti",
    "SEMANTIC_KITTI_CLASSES",
    "SEMANTIC_KITTI_RAW_CLASSES",
    "SEMANTIC_KITTI_LEARNING_MAP",
    "semantic_kitti_learning_labels",
]

PathLike = Union[str, "os.PathLike[str]"]

#: The 19 evaluated classes; ``y`` indexes this tuple (-1: unlabeled/ignored).
SEMANTIC_KITTI_CLASSES: tuple[str, ...] = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence",
    "vegetation", "trunk", "terrain", "pole", "traffic-sign",
)  # fmt: skip

#: Raw label ids of the ``.label`` files and their names (``semantic-kitti.yaml``).
SEMANTIC_KITTI_RAW_CLASSES: dict[int, str] = {
    0: "unlabeled", 1: "outlier", 10: "car", 11: "bicycle", 13: "bus", 15: "motorcycle",
    16: "on-rails", 18: "truck", 20: "other-vehicle", 30: "person", 31: "bicyclist",
    32: "motorcyclist", 40: "road", 44: "parking", 48: "sidewalk", 49: "other-ground",
    50: "building", 51: "fence", 52: "other-structure", 60: "lane-marking", 70: "vegetation",
    71: "trunk", 72: "terrain", 80: "pole", 81: "traffic-sign", 99: "other-object",
    252: "moving-car", 253: "moving-bicyclist", 254: "moving-person",
    255: "moving-motorcyclist", 256: "moving-on-rails", 257: "moving-bus",
    258: "moving-truck", 259: "moving-other-vehicle",
}  # fmt: skip

#: ``learning_map`` of ``semantic-kitti.yaml``: raw id -> 0 (unlabeled) .. 19.
SEMANTIC_KITTI_LEARNING_MAP: dict[int, int] = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8,
    40: 9, 44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17,
    80: 18, 81: 19, 99: 0, 252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}  # fmt: skip

_UNKNOWN = -2
_LOOKUP = torch.full((max(SEMANTIC_KITTI_LEARNING_MAP) + 1,), _UNKNOWN, dtype=torch.long)
for _raw, _learning in SEMANTIC_KITTI_LEARNING_MAP.items():
    _LOOKUP[_raw] = _learning - 1
_LABEL_MAPS = ("learning", "raw")


def semantic_kitti_learning_labels(raw: torch.Tensor) -> torch.Tensor:
    """Map raw SemanticKITTI semantic ids to geo3d class ids.

    Args:
        raw: Raw semantic ids (keys of :data:`SEMANTIC_KITTI_RAW_CLASSES`).

    Returns:
        Class ids 0..18 indexing :data:`SEMANTIC_KITTI_CLASSES`, -1 for unlabeled.

    Shapes:
        raw ``[N]`` integer -> ``[N]`` long.

    Raises:
        InvalidInputError: On ids that the SemanticKITTI label definition does not list.
    """
    if not isinstance(raw, torch.Tensor) or raw.is_floating_point() or raw.dtype == torch.bool:
        raise InvalidInputError(f"raw must be an integer tensor, got {getattr(raw, 'dtype', type(raw).__name__)}")
    raw = raw.to(torch.long)
    inside = (raw >= 0) & (raw < len(_LOOKUP))
    out = torch.full_like(raw, _UNKNOWN)
    out[inside] = _LOOKUP.to(raw.device)[raw[inside]]
    if bool((out == _UNKNOWN).any()):
        unknown = sorted(set(raw[out == _UNKNOWN].tolist()))[:10]
        raise InvalidInputError(f"raw holds semantic ids that SemanticKITTI does not define: {unknown}")
    return out


class SemanticKitti(Dataset):
    """SemanticKITTI scans with per-point semantic and instance labels.

    Each item is ``Data(pos, x, x_names=["intensity"], y, instance, sequence, frame)``
    (``x`` is the remission; no ``y``/``instance`` for sequences without ``labels/``).
    Frames are the ``NNNNNN.bin`` files of each sequence, in sequence then frame order.

    Args:
        root: The dataset root (holding ``sequences/``).
        sequences: Sequence numbers, e.g. ``[0, 1]`` or ``["00"]``.
        label_map: ``"learning"`` (default): ``y`` in 0..18 indexing
            :data:`SEMANTIC_KITTI_CLASSES`, -1 for unlabeled. ``"raw"``: the raw ids.

    Shapes:
        pos ``[N, 3]``, x ``[N, 1]``, y ``[N]`` long, instance ``[N]`` long (-1: none).

    Raises:
        InvalidInputError: Bad ``sequences`` or ``label_map``.
        FileFormatError: A missing sequence folder or one without scans (at
            construction); a missing, corrupt or mismatched scan or label file, or unknown
            raw ids (when an item is read).
    """

    def __init__(self, root: PathLike, sequences: Sequence[Union[int, str]], label_map: str = "learning") -> None:
        if label_map not in _LABEL_MAPS:
            raise InvalidInputError(f"label_map must be one of {_LABEL_MAPS}, got {label_map!r}")
        self.root = Path(root)
        self.label_map = label_map
        self.sequences = _sequence_names(sequences)
        self.frames: list[tuple[str, int, Path, Union[Path, None]]] = []
        for seq in self.sequences:
            folder = self.root / "sequences" / seq
            velodyne = folder / "velodyne"
            if not velodyne.is_dir():
                raise FileFormatError(f"SemanticKITTI folder {str(velodyne)!r} does not exist")
            scans = [p for p in velodyne.glob("*.bin") if re.fullmatch(r"\d+", p.stem)]
            scans.sort(key=lambda p: int(p.stem))
            if not scans:
                raise FileFormatError(f"SemanticKITTI folder {str(velodyne)!r} holds no NNNNNN.bin scans")
            labels = folder / "labels"
            for scan in scans:
                label = labels / f"{scan.stem}.label" if labels.is_dir() else None
                self.frames.append((seq, int(scan.stem), scan, label))

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Data:
        seq, frame, scan, label = self.frames[index]
        data = read_point_cloud(scan, format="kitti")
        data.sequence, data.frame = seq, frame
        if label is None:
            return data
        semantic, instance = read_labels(label)
        if len(semantic) != data.num_nodes:
            raise FileFormatError(
                f"label file {str(label)!r} has {len(semantic)} labels but scan {str(scan)!r} "
                f"has {data.num_nodes} points"
            )
        if self.label_map == "learning":
            try:
                semantic = semantic_kitti_learning_labels(semantic)
            except InvalidInputError as err:
                raise FileFormatError(f"label file {str(label)!r}: {err}") from None
        data.y, data.instance = semantic, instance
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, sequences={self.sequences}, frames={len(self)})"


def _sequence_names(sequences: object) -> list[str]:
    if isinstance(sequences, (int, str)):
        sequences = [sequences]
    if not isinstance(sequences, (list, tuple)) or not sequences:
        raise InvalidInputError(f"sequences must be a non-empty list of ints or digit strings, got {sequences!r}")
    names = []
    for seq in sequences:
        if isinstance(seq, bool) or not (
            (isinstance(seq, int) and seq >= 0) or (isinstance(seq, str) and seq.isdigit())
        ):
            raise InvalidInputError(f"sequences entries must be ints >= 0 or digit strings, got {seq!r}")
        names.append(f"{int(seq):02d}")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"sequences lists a sequence twice: {names}")
    return names
