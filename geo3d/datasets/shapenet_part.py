"""ShapeNetPart (Yi et al., SIGGRAPH Asia 2016) from its normal-resampled txt release.

Layout (``shapenetcore_partanno_segmentation_benchmark_v0_normal``)::

    root/synsetoffset2category.txt          lines "Airplane<TAB>02691156"
    root/<synset>/<id>.txt                  rows "x y z nx ny nz part" (part: global 0..49)
    root/train_test_split/shuffled_{train,val,test}_file_list.json
                                            JSON lists of "shape_data/<synset>/<id>"

numpy parses the text (``np.loadtxt``); on a bad file we re-read it line by line to name
the first bad line. The 16 categories and their part ranges are the benchmark's.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.datasets._common import (CachedItems, check_bool, check_choice, check_int,
                                    normalise_unit_sphere, read_text_table)
from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io._formats import check_readable

__all__ = ["ShapeNetPart"]

PathLike = Union[str, "os.PathLike[str]"]

_PART_COUNTS = {
    "Airplane": 4, "Bag": 2, "Cap": 2, "Car": 4, "Chair": 4, "Earphone": 3, "Guitar": 3,
    "Knife": 2, "Lamp": 4, "Laptop": 2, "Motorbike": 6, "Mug": 2, "Pistol": 3, "Rocket": 3,
    "Skateboard": 3, "Table": 3,
}


class ShapeNetPart(CachedItems):
    """ShapeNetPart part segmentation: points with normals and global part labels.

    Each item picks ``num_points`` of the shape's points (without replacement when the shape
    has enough, else with; seeded by ``seed`` and the shape id) and, with ``normalize``,
    centres them and scales them to the unit sphere.

    Args:
        root: the release folder.
        split: ``"train"`` (default), ``"val"``, ``"test"`` or ``"trainval"``.
        num_points: points per item (default 2048); None keeps every point in file order.
        categories: category names to keep (default None: all 16).
        seed: base seed of the point selection (default 0).
        normalize: centre and scale to the unit sphere (default True).
        cache: keep items in memory and hand out copies (default False).

    Shapes:
        ``dataset[i]`` is ``Data(pos [N, 3] float32, x [N, 3] float32 normals, y [N] long
        global part ids, category [1] long)``; ``category`` indexes :attr:`CLASS_NAMES`
        and the parts of category ``c`` are ``CLASS_PARTS[CLASS_NAMES[c]]``.

    Raises:
        InvalidInputError: bad arguments or unknown category names.
        FileFormatError: missing or corrupt index, split or shape files (naming them).
    """

    CLASS_NAMES: tuple[str, ...] = tuple(_PART_COUNTS)
    CLASS_PARTS: dict[str, tuple[int, ...]] = {
        name: tuple(range(sum(list(_PART_COUNTS.values())[:i]),
                          sum(list(_PART_COUNTS.values())[:i + 1])))
        for i, name in enumerate(_PART_COUNTS)}
    NUM_CLASSES: int = 16
    NUM_PARTS: int = 50

    def __init__(self, root: PathLike, split: str = "train", num_points: Optional[int] = 2048,
                 categories: Optional[Sequence[str]] = None, seed: int = 0,
                 normalize: bool = True, cache: bool = False) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise InvalidInputError(f"root must be a path, got {type(root).__name__}")
        self.root = Path(root)
        self.split = check_choice("split", split, ("train", "val", "test", "trainval"))
        self.num_points = None if num_points is None else check_int("num_points", num_points, 1)
        self.seed = check_int("seed", seed, 0)
        self.normalize = check_bool("normalize", normalize)
        super().__init__(check_bool("cache", cache))
        if categories is not None:
            if isinstance(categories, str) or not all(c in _PART_COUNTS for c in categories):
                raise InvalidInputError(f"categories must be a list of names from "
                                        f"{list(self.CLASS_NAMES)}, got {categories!r}")
        wanted = set(self.CLASS_NAMES if categories is None else categories)
        synsets = self._read_categories()
        self.files: list[tuple[Path, int]] = []
        for part in ("train", "val") if split == "trainval" else (split,):
            for entry in self._read_split(part):
                synset, shape = entry[-2], entry[-1]
                if synset not in synsets:
                    raise FileFormatError(f"split file of {part!r} names synset {synset!r} that "
                                          f"synsetoffset2category.txt does not list")
                if synsets[synset] in wanted:
                    label = self.CLASS_NAMES.index(synsets[synset])
                    self.files.append((self.root / synset / f"{shape}.txt", label))

    def _read_categories(self) -> dict[str, str]:
        path = self.root / "synsetoffset2category.txt"
        check_readable(path)
        synsets = {}
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[0] not in _PART_COUNTS:
                raise FileFormatError(f"{str(path)!r} line {number}: expected '<category> "
                                      f"<synset>' with a ShapeNetPart category, got {line!r}")
            synsets[fields[1]] = fields[0]
        return synsets

    def _read_split(self, part: str) -> list[list[str]]:
        path = self.root / "train_test_split" / f"shuffled_{part}_file_list.json"
        check_readable(path)
        try:
            entries = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise FileFormatError(f"split file {str(path)!r} is not valid JSON: {err}") from None
        if not isinstance(entries, list) or not all(
                isinstance(e, str) and len(e.split("/")) >= 2 for e in entries):
            raise FileFormatError(f"split file {str(path)!r} must be a JSON list of "
                                  f"'shape_data/<synset>/<id>' strings")
        return [e.split("/") for e in entries]

    @property
    def num_classes(self) -> int:
        """The number of part labels (50), the targets of the per-point ``y``."""
        return self.NUM_PARTS

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> Data:
        path, label = self.files[index]
        table = read_text_table(path, 7)
        parts = table[:, 6]
        allowed = self.CLASS_PARTS[self.CLASS_NAMES[label]]
        bad = (parts != np.round(parts)) | (parts < allowed[0]) | (parts > allowed[-1])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise FileFormatError(f"{str(path)!r}: row {row + 1} has part label {parts[row]}, "
                                  f"{self.CLASS_NAMES[label]} parts are {allowed[0]}..{allowed[-1]}")
        if self.num_points is not None:
            key = zlib.crc32(path.relative_to(self.root).as_posix().encode())
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, key]))
            n = len(table)
            table = table[rng.choice(n, self.num_points, replace=n < self.num_points)]
        pos = normalise_unit_sphere(table[:, :3]) if self.normalize else table[:, :3]
        return Data(pos=torch.from_numpy(pos.astype(np.float32)),
                    x=torch.from_numpy(table[:, 3:6].astype(np.float32)),
                    y=torch.from_numpy(table[:, 6].astype(np.int64)),
                    category=torch.tensor([label], dtype=torch.long))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"num_points={self.num_points}, size={len(self)})")
