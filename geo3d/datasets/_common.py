"""Helpers shared by the dataset modules: argument checks, seeding, caching, text tables.

Private to ``geo3d.datasets``; numpy, scipy and torch do the work.
"""

from __future__ import annotations

import io
import operator
import os
from typing import Optional, Union

import numpy as np
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io._formats import check_readable

PathLike = Union[str, "os.PathLike[str]"]


_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}


def _resolve_index(index: object, size: int) -> int:
    """A list-like index: negative counts from the end; IndexError when out of range."""
    try:
        i = operator.index(index)
    except TypeError:
        raise InvalidInputError(f"index must be an integer, got {type(index).__name__}") from None
    if not -size <= i < size:
        raise IndexError(f"index {i} is out of range for a dataset of size {size}")
    return i % size


def _seed_sequence(seed: int, split: str, kind: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), _SPLIT_CODES[split], kind, index])


def check_int(name: str, value: object, low: int) -> int:
    """Return ``value`` as an int; InvalidInputError unless it is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_choice(name: str, value: object, choices: tuple) -> str:
    """Return ``value``; InvalidInputError unless it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidInputError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value``; InvalidInputError unless it is a bool."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a bool, got {value!r}")
    return value


def random_rotation(kind: str, rng: np.random.Generator) -> Optional[np.ndarray]:
    """A random 3x3 rotation: None for ``"none"``, about +z for ``"z"``, uniform for ``"so3"``."""
    if kind == "none":
        return None
    if kind == "z":
        return Rotation.from_euler("z", rng.uniform(0.0, 2 * np.pi)).as_matrix()
    return Rotation.random(random_state=rng).as_matrix()


def normalise_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre points on their mean and scale the farthest to distance 1 (``[N, 3]``)."""
    centred = points - points.mean(axis=0)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max())
    return centred / radius if radius > 0 else centred


class CachedItems(Dataset):
    """A map-style dataset that builds item ``i`` with ``self._load(i)``, optionally cached.

    With ``cache`` the first build of an item is kept and copies are handed out, so a
    caller cannot change the cache. Indices work like a list's (negative from the end).
    """

    def __init__(self, cache: bool) -> None:
        self.cache = cache
        self._cache: dict[int, Data] = {}

    def _load(self, index: int) -> Data:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Data:
        i = _resolve_index(index, len(self))
        if not self.cache:
            return self._load(i)
        if i not in self._cache:
            self._cache[i] = self._load(i)
        return self._cache[i].clone()


def read_text_table(path: PathLike, columns: int, skip_bad_lines: bool = False) -> np.ndarray:
    """Read a whitespace-separated text table of ``columns`` finite numbers per row.

    Args:
        path: the file.
        columns: numbers per row.
        skip_bad_lines: drop rows that do not parse (default False: raise).

    Returns:
        ``[R, columns]`` float64, ``R >= 1``; blank lines are ignored.

    Raises:
        FileFormatError: missing or empty file, no rows, or (unless ``skip_bad_lines``) a
            row that is not ``columns`` finite numbers, naming the file and line.
    """
    check_readable(path)
    with open(path, "rb") as fh:
        text = fh.read()
    try:
        table = np.loadtxt(io.BytesIO(text), dtype=np.float64, ndmin=2, comments=None)
        if table.shape[1] == columns and np.isfinite(table).all():
            return table
    except ValueError:
        pass
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            row = [float(f) for f in fields]
            good = len(row) == columns and all(np.isfinite(row))
        except ValueError:
            good = False
        if good:
            rows.append(row)
        elif not skip_bad_lines:
            raise FileFormatError(
                f"{str(path)!r} line {number}: expected {columns} finite numbers, got "
                f"{line[:80].decode('utf-8', 'backslashreplace')!r}")
    if not rows:
        raise FileFormatError(f"{str(path)!r} holds no rows of {columns} numbers")
    return np.asarray(rows, dtype=np.float64)
