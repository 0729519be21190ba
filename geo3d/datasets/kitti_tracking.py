"""KITTI multi-object tracking (Geiger et al., CVPR 2012) in its published folder layout.

Written here, like :mod:`geo3d.datasets.kitti`, whose label-to-LiDAR box conversion
(:func:`geo3d.datasets.kitti.kitti_label_boxes_to_lidar`) it reuses. Layout::

    root/training/velodyne/SSSS/NNNNNN.bin   LiDAR scans of sequence SSSS
    root/training/label_02/SSSS.txt          one line per box and frame
    root/training/calib/SSSS.txt             one calibration per sequence
    root/training/oxts/SSSS.txt              GPS/IMU, one line per frame (optional)
    root/testing/...                         the same without label_02

Label lines are ``frame track_id type truncated occluded alpha x1 y1 x2 y2 h w l x y z
rotation_y [score]`` in the rectified camera frame; DontCare lines (track id -1) and
types not in ``classes`` are skipped. The calibration holds ``P0..P3:``, ``R_rect``,
``Tr_velo_cam`` and ``Tr_imu_velo`` (names with or without a colon, as the files come);
they are returned under the object-detection names ``R0_rect``, ``Tr_velo_to_cam`` and
``Tr_imu_to_velo``. Boxes come out in geo3d's LiDAR convention (see
:mod:`geo3d.datasets.kitti`).

Ego poses: where ``oxts/SSSS.txt`` exists, each frame carries ``ego_pose`` [1, 4, 4], the
world-from-LiDAR pose with the world frame = the sequence's first LiDAR frame. The OXTS
latitude, longitude and altitude are projected with the devkit's Mercator convention
(scale ``cos(lat_0)``, Earth radius 6,378,137 m), the IMU orientation is
``Rz(yaw) Ry(pitch) Rx(roll)``, and the LiDAR pose is ``T_world_imu inv(Tr_imu_to_velo)``.
Without the file frames carry no ``ego_pose`` and a tracker works in the moving sensor
frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data

from geo3d.datasets.kitti import KITTI_CLASSES, PathLike, _lines, kitti_label_boxes_to_lidar
from geo3d.datasets._common import _resolve_index
from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import read_point_cloud

__all__ = ["KittiTracking", "read_kitti_tracking_calib", "read_kitti_tracking_labels",
           "read_kitti_oxts_poses"]

_EARTH_RADIUS_M = 6378137.0
_OXTS_FIELDS = 30

_CALIB_NAMES = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam", "Tr_imu_velo": "Tr_imu_to_velo"}
_SHAPES = {12: (3, 4), 9: (3, 3)}


def read_kitti_tracking_calib(path: PathLike) -> dict[str, np.ndarray]:
    """Read a KITTI tracking calibration file (``calib/SSSS.txt``).

    Returns:
        ``{key: float64 array}`` with ``[3, 4]`` ``P0..P3``, ``Tr_velo_to_cam``,
        ``Tr_imu_to_velo`` and ``[3, 3]`` ``R0_rect`` (object-detection names).

    Raises:
        FileFormatError: Missing/empty file, a malformed line (with its number), or no
            ``R_rect`` / ``Tr_velo_cam`` of the right size.
    """
    calib: dict[str, np.ndarray] = {}
    for number, line in _lines(path):
        fields = line.replace(":", " ", 1).split() if ":" in line.split()[0] else line.split()
        try:
            values = np.array([float(v) for v in fields[1:]], dtype=np.float64)
            if not values.size or not np.isfinite(values).all():
                raise ValueError
        except ValueError:
            raise FileFormatError(f"calibration file {str(path)!r} line {number} is malformed: {line!r}") from None
        shape = _SHAPES.get(values.size)
        calib[_CALIB_NAMES.get(fields[0], fields[0])] = values.reshape(shape) if shape else values
    for key, shape in (("R0_rect", (3, 3)), ("Tr_velo_to_cam", (3, 4))):
        if key not in calib or calib[key].shape != shape:
            raise FileFormatError(f"calibration file {str(path)!r} lacks {key} with {shape[0] * shape[1]} numbers")
    return calib


def read_kitti_tracking_labels(
    path: PathLike, calib: Mapping[str, np.ndarray], classes: Mapping[str, int] = KITTI_CLASSES
) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Read a ``label_02/SSSS.txt`` file as LiDAR boxes per frame.

    Returns:
        ``{frame: (boxes [K, 7] float32, box_labels [K] long, track_id [K] long)}`` for the
        frames with at least one kept box.

    Raises:
        FileFormatError: Missing file, or a malformed line (wrong field count, a
            non-number, NaN/Inf, negative frame or track id of a kept box, non-positive
            size, a track id repeated within a frame), with its number.
    """
    rows: dict[int, list] = {}
    for number, line in _lines(path, allow_empty=True):
        fields = line.split()
        try:
            if len(fields) not in (17, 18):
                raise ValueError(f"{len(fields)} fields, expected 17 or 18")
            frame, track = int(fields[0]), int(fields[1])
            values = np.array([float(v) for v in fields[3:]], dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError("NaN/Inf value")
        except ValueError as err:
            raise FileFormatError(f"label file {str(path)!r} line {number} is malformed ({err}): {line!r}") from None
        if fields[2] not in classes:
            continue
        if frame < 0 or track < 0:
            raise FileFormatError(f"label file {str(path)!r} line {number}: frame and track id must be >= 0")
        if (values[7:10] <= 0).any():
            raise FileFormatError(f"label file {str(path)!r} line {number}: box size h, w, l must be positive")
        if any(t == track for t, _, _ in rows.get(frame, [])):
            raise FileFormatError(f"label file {str(path)!r} line {number}: track {track} twice in frame {frame}")
        rows.setdefault(frame, []).append((track, int(classes[fields[2]]), values[7:14]))
    out = {}
    for frame, items in rows.items():
        boxes = kitti_label_boxes_to_lidar(np.array([v for _, _, v in items]), calib)
        out[frame] = (torch.from_numpy(boxes.astype(np.float32)),
                      torch.tensor([c for _, c, _ in items], dtype=torch.long),
                      torch.tensor([t for t, _, _ in items], dtype=torch.long))
    return out


def _rotation(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch),
                              np.cos(yaw), np.sin(yaw))
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def read_kitti_oxts_poses(path: PathLike, imu_to_velo: Optional[np.ndarray] = None) -> np.ndarray:
    """World-from-sensor poses of a KITTI ``oxts/SSSS.txt`` file, one per line (frame).

    Args:
        path: The OXTS file: 30 numbers per line (lat, lon, alt, roll, pitch, yaw, ...).
        imu_to_velo: ``Tr_imu_to_velo`` [3, 4] of the calibration; given, the poses are of
            the LiDAR (``T_world_imu inv(Tr_imu_to_velo)``), else of the IMU.

    Returns:
        ``[T, 4, 4]`` float64, relative to the first frame (``poses[0]`` is the identity).

    Raises:
        FileFormatError: Missing/empty file, or a line without 30 finite numbers, or a
            latitude outside (-90, 90), with its number.
    """
    rows = []
    for number, line in _lines(path):
        try:
            values = np.array([float(v) for v in line.split()], dtype=np.float64)
        except ValueError:
            values = np.zeros(0)
        if values.size != _OXTS_FIELDS or not np.isfinite(values).all() or abs(values[0]) >= 90:
            raise FileFormatError(f"OXTS file {str(path)!r} line {number} is malformed: expected "
                                  f"{_OXTS_FIELDS} finite numbers starting with a latitude in "
                                  f"(-90, 90), got {line[:80]!r}")
        rows.append(values)
    oxts = np.stack(rows)
    lat, lon, alt = oxts[:, 0], oxts[:, 1], oxts[:, 2]
    scale = np.cos(np.deg2rad(lat[0]))
    poses = np.tile(np.eye(4), (len(oxts), 1, 1))
    poses[:, 0, 3] = scale * _EARTH_RADIUS_M * np.deg2rad(lon)
    poses[:, 1, 3] = scale * _EARTH_RADIUS_M * np.log(np.tan(np.deg2rad(90.0 + lat) / 2))
    poses[:, 2, 3] = alt
    for t, (roll, pitch, yaw) in enumerate(oxts[:, 3:6]):
        poses[t, :3, :3] = _rotation(roll, pitch, yaw)
    if imu_to_velo is not None:
        velo_from_imu = np.eye(4)
        velo_from_imu[:3, :] = np.asarray(imu_to_velo, dtype=np.float64).reshape(3, 4)
        poses = poses @ np.linalg.inv(velo_from_imu)
    return np.linalg.inv(poses[0]) @ poses


class KittiTracking(Dataset):
    """KITTI tracking sequences; item ``i`` is the list of frames of sequence ``i``.

    Each frame is ``Data(pos, x, x_names=["intensity"], frame, sequence, boxes,
    box_labels, track_id)`` (no boxes in ``testing``), plus ``ego_pose`` [1, 4, 4] where
    ``oxts/SSSS.txt`` exists (see the module docstring). Frames are the scans of
    ``velodyne/SSSS``, in file order; ``frame`` is the number in the file name.

    Args:
        root: The dataset root (holding ``training/`` and/or ``testing/``).
        split: ``"training"`` (default) or ``"testing"``.
        sequences: Sequence names to use, e.g. ``["0000", "0003"]`` (default: all).
        classes: KITTI type -> class id. Default None: :data:`KITTI_CLASSES`.

    Shapes:
        pos ``[N, 3]``, x ``[N, 1]``, boxes ``[K, 7]``, box_labels ``[K]``, track_id ``[K]``.

    Raises:
        InvalidInputError: A bad split, sequences or classes.
        FileFormatError: Missing folders or sequences at construction; missing or corrupt
            scans, labels or calibration when an item is read.
    """

    def __init__(self, root: PathLike, split: str = "training", sequences: Optional[Sequence[str]] = None,
                 classes: Optional[Mapping[str, int]] = None) -> None:
        if split not in ("training", "testing"):
            raise InvalidInputError(f"split must be 'training' or 'testing', got {split!r}")
        classes = dict(KITTI_CLASSES if classes is None else classes)
        if not all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in classes.items()):
            raise InvalidInputError(f"classes must map KITTI type names to ids >= 0, got {classes!r}")
        self.root, self.split, self.classes = Path(root), split, classes
        self.folder = self.root / split
        velodyne = self.folder / "velodyne"
        if not velodyne.is_dir():
            raise FileFormatError(f"KITTI tracking folder {str(velodyne)!r} does not exist")
        found = sorted(p.name for p in velodyne.iterdir() if p.is_dir())
        if sequences is None:
            self.sequences = found
        else:
            if isinstance(sequences, str) or not all(isinstance(s, str) for s in sequences):
                raise InvalidInputError(f"sequences must be a list of names like '0000', got {sequences!r}")
            missing = [s for s in sequences if s not in found]
            if missing:
                raise FileFormatError(f"sequences {missing} are not in {str(velodyne)!r}")
            self.sequences = list(sequences)
        self.has_labels = split == "training"

    def __len__(self) -> int:
        return len(self.sequences)

    def iter_frames(self, index: int) -> Iterator[Data]:
        """The frames of sequence ``index`` one at a time (scans read lazily)."""
        seq = self.sequences[_resolve_index(index, len(self))]
        scans = sorted((self.folder / "velodyne" / seq).glob("*.bin"))
        if not scans:
            raise FileFormatError(f"sequence folder {str(self.folder / 'velodyne' / seq)!r} holds no .bin scans")
        labels, poses, calib = {}, None, None
        if self.has_labels:
            calib = read_kitti_tracking_calib(self.folder / "calib" / f"{seq}.txt")
            labels = read_kitti_tracking_labels(self.folder / "label_02" / f"{seq}.txt", calib, self.classes)
        oxts = self.folder / "oxts" / f"{seq}.txt"
        if oxts.is_file():
            calib = calib or read_kitti_tracking_calib(self.folder / "calib" / f"{seq}.txt")
            if "Tr_imu_to_velo" not in calib or calib["Tr_imu_to_velo"].shape != (3, 4):
                raise FileFormatError(f"calibration of sequence {seq} lacks Tr_imu_velo, which "
                                      f"the ego poses of {str(oxts)!r} need")
            poses = read_kitti_oxts_poses(oxts, calib["Tr_imu_to_velo"])
        for scan in scans:
            if not scan.stem.isdigit():
                raise FileFormatError(f"scan {str(scan)!r} is not named by its frame number")
            data = read_point_cloud(scan, format="kitti")
            data.frame, data.sequence = int(scan.stem), seq
            if self.has_labels:
                empty = (torch.zeros(0, 7), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
                data.boxes, data.box_labels, data.track_id = labels.get(data.frame, empty)
            if poses is not None:
                if data.frame >= len(poses):
                    raise FileFormatError(f"{str(oxts)!r} has {len(poses)} lines, no pose for "
                                          f"frame {data.frame}")
                data.ego_pose = torch.from_numpy(poses[data.frame].astype(np.float32))[None]
            yield data

    def __getitem__(self, index: int) -> list[Data]:
        return list(self.iter_frames(index))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, sequences={len(self)})"
