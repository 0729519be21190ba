"""Loader for the MSRA hand gesture layout (Sun et al., "Cascaded Hand Pose Regression",
CVPR 2015): ``P0..P8/<gesture>/000000_depth.bin`` plus ``joint.txt`` per gesture folder.

numpy reads the files; the format is documented nowhere official, so here is what we
read (the layout of the public release, as the Hand PointNet preprocessing reads it):

* ``NNNNNN_depth.bin``: six little-endian int32 ``img_width, img_height, left, top,
  right, bottom``, then float32 depth in millimetres of the bounding box
  ``[left, right) x [top, bottom)``, row-major (``(bottom - top) * (right - left)``
  values); 0 means no depth (the background is already removed).
* ``joint.txt``: the first line is the frame count ``F``; then ``F`` lines of 21 x 3
  floats ``x y z`` in millimetres. MSRA joints are in a right-handed frame with y up and
  the camera looking along -z, so z is negative; the joint order is wrist, index, middle,
  ring, little, thumb (4 each, base to tip).

We return camera coordinates in geo3d's depth-camera convention (OpenCV: x right, y down,
z forward, metres): a pixel ``(u, v)`` with depth ``d`` becomes
``((u - cx) d / fx, (v - cy) d / fy, d)`` with the MSRA intrinsics ``fx = fy = 241.42``,
``cx = 160``, ``cy = 120`` (320 x 240), and a joint ``(x, y, z)`` becomes
``(x, -y, -z) / 1000``, reordered to :data:`geo3d.sim.hand.JOINTS` (thumb first).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.datasets._common import CachedItems, PathLike, check_bool
from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io._formats import check_readable

__all__ = ["MSRAHand", "read_msra_depth", "read_msra_joints", "MSRA_INTRINSICS", "MSRA_TO_GEO3D"]

MSRA_INTRINSICS = {"fx": 241.42, "fy": 241.42, "cx": 160.0, "cy": 120.0, "width": 320, "height": 240}
"""The MSRA camera: focal lengths and principal point in pixels, image size."""

MSRA_TO_GEO3D: tuple[int, ...] = (0, 17, 18, 19, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                  13, 14, 15, 16)
"""``geo3d_joints = msra_joints[MSRA_TO_GEO3D]`` (MSRA: wrist, index..little, thumb)."""

_HEADER = 6


def read_msra_depth(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``*_depth.bin``.

    Returns:
        ``(depth [H, W] float32 mm (0: none), box (left, top, right, bottom) int)`` with the
        depth placed in the full ``img_height x img_width`` image.

    Raises:
        FileFormatError: missing, short header, inconsistent box, or truncated/extra data.
    """
    check_readable(path)
    raw = Path(path).read_bytes()
    if len(raw) < 4 * _HEADER:
        raise FileFormatError(f"{str(path)!r}: {len(raw)} bytes, shorter than the 24-byte header")
    w, h, left, top, right, bottom = (int(v) for v in np.frombuffer(raw[:24], "<i4"))
    if not (0 < w <= 10000 and 0 < h <= 10000 and 0 <= left < right <= w and 0 <= top < bottom <= h):
        raise FileFormatError(f"{str(path)!r}: bad header (img_width {w}, img_height {h}, "
                              f"box left {left} top {top} right {right} bottom {bottom})")
    n = (right - left) * (bottom - top)
    if len(raw) != 24 + 4 * n:
        raise FileFormatError(f"{str(path)!r}: expected {n} float32 depth values for the "
                              f"{right - left}x{bottom - top} box, got {(len(raw) - 24) / 4:g}")
    box = np.frombuffer(raw[24:], "<f4").reshape(bottom - top, right - left)
    if not np.isfinite(box).all() or (box < 0).any():
        raise FileFormatError(f"{str(path)!r}: depth values must be finite and >= 0")
    depth = np.zeros((h, w), np.float32)
    depth[top:bottom, left:right] = box
    return depth, np.array([left, top, right, bottom])


def read_msra_joints(path: PathLike) -> np.ndarray:
    """Read a ``joint.txt``: ``[F, 21, 3]`` float64 in MSRA's own frame and order (mm).

    Raises:
        FileFormatError: missing file, bad count line, or a row that is not 63 finite
            numbers, or fewer rows than the count.
    """
    check_readable(path)
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    try:
        count = int(lines[0].strip()) if lines else -1
    except ValueError:
        count = -1
    if count < 0:
        raise FileFormatError(f"{str(path)!r}: the first line must be the frame count")
    if len(lines) - 1 < count:
        raise FileFormatError(f"{str(path)!r}: says {count} frames but has {len(lines) - 1} rows")
    rows = []
    for i, ln in enumerate(lines[1 : count + 1], start=2):
        try:
            row = np.array([float(v) for v in ln.split()])
        except ValueError:
            row = np.zeros(0)
        if row.shape != (63,) or not np.isfinite(row).all():
            raise FileFormatError(f"{str(path)!r} line {i}: expected 63 finite numbers")
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(count, 21, 3)


class MSRAHand(CachedItems):
    """The MSRA hand gesture dataset: one item per depth frame.

    Args:
        root: folder holding ``P0`` .. ``P8``.
        subjects: subject folders to use, e.g. ``("P0", "P1")`` (default: every ``P<d>``
            folder found). Leave-one-subject-out: pass the others.
        gestures: gesture folder names to use (default: all).
        cache: keep loaded frames in memory (default False).

    Shapes:
        ``dataset[i]`` is a ``Data`` with ``pos`` [N, 3] (valid pixels, camera frame x
        right, y down, z forward, metres, row-major), ``joints`` [21, 3] (metres, order of
        :data:`geo3d.sim.hand.JOINTS`), ``pixels`` [N, 2] (u, v), ``intrinsics`` [1, 3, 3],
        ``subject`` and ``gesture`` (str), ``frame`` (int).

    Raises:
        FileFormatError: ``root`` or a requested subject/gesture folder missing, no frames,
            or (when an item is read) a bad file.
    """

    def __init__(self, root: PathLike, subjects: Optional[Sequence[str]] = None,
                 gestures: Optional[Sequence[str]] = None, cache: bool = False) -> None:
        super().__init__(check_bool("cache", cache))
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileFormatError(f"root {str(root)!r} is not a folder")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and re.fullmatch(r"P\d", p.name))
        if subjects is None:
            subjects = found
        elif isinstance(subjects, str) or not all(isinstance(s, str) for s in subjects):
            raise InvalidInputError(f"subjects must be a sequence of folder names, got {subjects!r}")
        if gestures is not None and (isinstance(gestures, str) or
                                     not all(isinstance(g, str) for g in gestures)):
            raise InvalidInputError(f"gestures must be a sequence of folder names, got {gestures!r}")
        self._frames: list[tuple[str, str, int]] = []
        self._joints: dict[tuple[str, str], np.ndarray] = {}
        for s in subjects:
            sdir = self.root / s
            if not sdir.is_dir():
                raise FileFormatError(f"subject folder {str(sdir)!r} does not exist")
            names = sorted(p.name for p in sdir.iterdir() if p.is_dir())
            for g in names if gestures is None else gestures:
                gdir = sdir / g
                if not gdir.is_dir():
                    if gestures is None:
                        continue
                    raise FileFormatError(f"gesture folder {str(gdir)!r} does not exist")
                joints = read_msra_joints(gdir / "joint.txt")
                self._joints[(s, g)] = joints
                self._frames += [(s, g, i) for i in range(len(joints))]
        if not self._frames:
            raise FileFormatError(f"no MSRA frames under {str(root)!r} (expected "
                                  f"P0..P8/<gesture>/joint.txt)")
        k = MSRA_INTRINSICS
        self.intrinsics = np.array([[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1.0]])

    def __len__(self) -> int:
        return len(self._frames)

    def _load(self, index: int) -> Data:
        s, g, i = self._frames[index]
        path = self.root / s / g / f"{i:06d}_depth.bin"
        depth, _ = read_msra_depth(path)
        v, u = np.nonzero(depth > 0)
        z = depth[v, u].astype(np.float64) / 1000.0
        k = MSRA_INTRINSICS
        pos = np.stack([(u - k["cx"]) * z / k["fx"], (v - k["cy"]) * z / k["fy"], z], 1)
        j = self._joints[(s, g)][i][list(MSRA_TO_GEO3D)] * np.array([1.0, -1.0, -1.0]) / 1000.0
        return Data(pos=torch.from_numpy(pos).float(), joints=torch.from_numpy(j).float(),
                    pixels=torch.from_numpy(np.stack([u, v], 1)),
                    intrinsics=torch.from_numpy(self.intrinsics).float()[None],
                    subject=s, gesture=g, frame=i)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, frames={len(self)})"

