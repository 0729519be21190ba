"""S3DIS (Armeni et al., CVPR 2016) rooms from the ``Stanford3dDataset_v1.2`` layout.

Layout: ``root/Area_N/<room>/Annotations/<class>_<k>.txt``, one file per object with rows
``x y z r g b`` (metres, colours 0..255). The class is the file name before the last
``_``; names outside the 13 benchmark classes (``stairs`` in Area_5) count as
``clutter``, as the usual preprocessing (PointNet's ``collect_indoor3d_data``) does.
numpy parses the rows (see :func:`geo3d.datasets.shapenet_part.read_text_table`).

The release has a few malformed lines (Area_5/hallway_6 holds a stray non-printing
character in the middle of a number). By default such a line raises FileFormatError
naming the file and line; ``skip_bad_lines=True`` drops the bad rows instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.datasets._common import CachedItems, check_bool, read_text_table
from geo3d.errors import FileFormatError, InvalidInputError

__all__ = ["S3DIS"]

PathLike = Union[str, "os.PathLike[str]"]


class S3DIS(CachedItems):
    """S3DIS rooms as labelled point clouds, one ``Data`` per room.

    Rooms are listed area by area (in the order of ``areas``), sorted by name within an
    area; objects are numbered in the sorted order of their annotation file names.

    Args:
        root: the folder holding ``Area_1`` ... ``Area_6``.
        areas: the area numbers to load, e.g. ``[1, 2, 3, 4, 6]`` for training on the
            Area 5 fold.
        skip_bad_lines: drop malformed rows instead of raising (default False).
        cache: keep rooms in memory and hand out copies (default False).

    Shapes:
        ``dataset[i]`` is ``Data(pos [N, 3] float32 metres in the room frame, x [N, 3]
        float32 rgb / 255, y [N] long class in CLASS_NAMES, instance [N] long object index
        within the room, room: str "Area_N/<room>")``.

    Raises:
        InvalidInputError: bad arguments.
        FileFormatError: missing area folders, rooms without annotations, missing, empty or
            malformed annotation files (naming file and line), colours outside 0..255.
    """

    CLASS_NAMES: tuple[str, ...] = ("ceiling", "floor", "wall", "beam", "column", "window",
                                    "door", "table", "chair", "sofa", "bookcase", "board",
                                    "clutter")
    NUM_CLASSES: int = 13

    def __init__(self, root: PathLike, areas: Sequence[int], skip_bad_lines: bool = False,
                 cache: bool = False) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise InvalidInputError(f"root must be a path, got {type(root).__name__}")
        if (isinstance(areas, (str, bytes)) or not isinstance(areas, Sequence) or not areas
                or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a >= 1
                           for a in areas) or len(set(areas)) != len(areas)):
            raise InvalidInputError(f"areas must be a non-empty list of distinct integers >= 1, "
                                    f"got {areas!r}")
        self.root, self.areas = Path(root), [int(a) for a in areas]
        self.skip_bad_lines = check_bool("skip_bad_lines", skip_bad_lines)
        super().__init__(check_bool("cache", cache))
        self.rooms: list[Path] = []
        for area in self.areas:
            folder = self.root / f"Area_{area}"
            if not folder.is_dir():
                raise FileFormatError(f"S3DIS area folder {str(folder)!r} does not exist")
            rooms = sorted(d for d in folder.iterdir() if (d / "Annotations").is_dir())
            if not rooms:
                raise FileFormatError(f"S3DIS area folder {str(folder)!r} holds no "
                                      f"<room>/Annotations folders")
            self.rooms += rooms

    @property
    def num_classes(self) -> int:
        """The number of classes (13)."""
        return self.NUM_CLASSES

    def __len__(self) -> int:
        return len(self.rooms)

    def _load(self, index: int) -> Data:
        room = self.rooms[index]
        files = sorted((room / "Annotations").glob("*.txt"))
        if not files:
            raise FileFormatError(f"S3DIS room {str(room)!r} has no Annotations/*.txt files")
        tables, labels, instances = [], [], []
        for k, path in enumerate(files):
            table = read_text_table(path, 6, self.skip_bad_lines)
            rgb = table[:, 3:]
            if rgb.min() < 0 or rgb.max() > 255:
                raise FileFormatError(f"{str(path)!r}: colours must lie in 0..255, found "
                                      f"{rgb.min():g}..{rgb.max():g}")
            name = path.stem.rsplit("_", 1)[0]
            label = self.CLASS_NAMES.index(name) if name in self.CLASS_NAMES else self.NUM_CLASSES - 1
            tables.append(table)
            labels.append(np.full(len(table), label, np.int64))
            instances.append(np.full(len(table), k, np.int64))
        table = np.concatenate(tables)
        return Data(pos=torch.from_numpy(table[:, :3].astype(np.float32)),
                    x=torch.from_numpy((table[:, 3:] / 255.0).astype(np.float32)),
                    y=torch.from_numpy(np.concatenate(labels)),
                    instance=torch.from_numpy(np.concatenate(instances)),
                    room=f"{room.parent.name}/{room.name}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, areas={self.areas}, rooms={len(self)})"
