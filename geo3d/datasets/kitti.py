"""KITTI 3D object detection (Geiger et al., CVPR 2012) in its published folder layout.

Written here: the layout and the label/calibration text formats are simple and fixed, and
torchvision's ``Kitti`` covers only the camera images. The LiDAR scans are read with
:func:`geo3d.io.read_point_cloud`.

Layout::

    root/training/{velodyne/NNNNNN.bin, label_2/NNNNNN.txt, calib/NNNNNN.txt}
    root/testing/{velodyne/NNNNNN.bin, calib/NNNNNN.txt}
    root/ImageSets/{train,val,trainval,test}.txt   (one sample id per line)

Labels are in the rectified camera frame with (x, y, z) the bottom centre of the box;
:func:`kitti_label_boxes_to_lidar` turns them into geo3d's LiDAR boxes
``(x, y, z centre, l, w, h, yaw)``:

    centre = inverse(R0_rect @ Tr_velo_to_cam) @ (x, y, z); centre.z += h / 2;
    yaw = -rotation_y - pi / 2, wrapped to [-pi, pi).

(A car facing along the camera's z axis, rotation_y = -pi/2, faces LiDAR +x: yaw 0.)
The box stays upright in the LiDAR frame, as in the KITTI devkit and OpenPCDet.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import read_point_cloud

__all__ = [
    "KittiDetection",
    "KITTI_CLASSES",
    "KITTI_SPLITS",
    "read_kitti_calib",
    "read_kitti_label",
    "kitti_label_boxes_to_lidar",
]

PathLike = Union[str, "os.PathLike[str]"]

#: KITTI object types kept as boxes and their ids; the order of ``geo3d.sim.CLASSES``
#: (car, pedestrian, cyclist). Other types (Van, Truck, Person_sitting, Tram, Misc,
#: DontCare) are skipped; pass ``classes=`` to keep them, e.g. ``{"Car": 0, "Van": 0}``.
KITTI_CLASSES: dict[str, int] = {"Car": 0, "Pedestrian": 1, "Cyclist": 2}

#: ``train/val/trainval`` (ImageSets lists over training/), ``test`` (ImageSets over
#: testing/), ``training``/``testing`` (every scan of that folder).
KITTI_SPLITS: tuple[str, ...] = ("train", "val", "trainval", "test", "training", "testing")

_MATRIX_SHAPES = {12: (3, 4), 9: (3, 3)}


def read_kitti_calib(path: PathLike) -> dict[str, np.ndarray]:
    """Read a KITTI object calibration file (lines ``KEY: numbers``).

    Args:
        path: ``calib/NNNNNN.txt``.

    Returns:
        ``{key: float64 array}``; 12 numbers become ``[3, 4]`` (``P0..P3``,
        ``Tr_velo_to_cam``, ``Tr_imu_to_velo``), 9 become ``[3, 3]`` (``R0_rect``).

    Raises:
        FileFormatError: Missing/empty file, a malformed line (with its number), or no
            ``R0_rect``/``Tr_velo_to_cam`` of the right size.
    """
    calib: dict[str, np.ndarray] = {}
    for number, line in _lines(path):
        key, sep, rest = line.partition(":")
        try:
            if not sep or not key.strip():
                raise ValueError
            values = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            raise FileFormatError(f"calibration file {str(path)!r} line {number} is malformed: {line!r}") from None
        if not np.isfinite(values).all():
            raise FileFormatError(f"calibration file {str(path)!r} line {number} holds NaN/Inf")
        shape = _MATRIX_SHAPES.get(len(values))
        calib[key.strip()] = values.reshape(shape) if shape else values
    for key, shape in (("R0_rect", (3, 3)), ("Tr_velo_to_cam", (3, 4))):
        if key not in calib or calib[key].shape != shape:
            raise FileFormatError(f"calibration file {str(path)!r} lacks {key} with {shape[0] * shape[1]} numbers")
    return calib


def kitti_label_boxes_to_lidar(label_boxes: np.ndarray, calib: Mapping[str, np.ndarray]) -> np.ndarray:
    """Convert KITTI camera-frame label boxes to LiDAR boxes.

    Args:
        label_boxes: Label columns ``(h, w, l, x, y, z, rotation_y)`` in the rectified
            camera frame, (x, y, z) the bottom centre.
        calib: From :func:`read_kitti_calib` (uses ``R0_rect``, ``Tr_velo_to_cam``).

    Returns:
        ``(x, y, z, l, w, h, yaw)`` boxes in the LiDAR frame, centre at mid-height,
        yaw in [-pi, pi).

    Shapes:
        label_boxes ``[K, 7]`` -> ``[K, 7]`` float64.
    """
    label_boxes = np.asarray(label_boxes, dtype=np.float64).reshape(-1, 7)
    velo_to_rect = _homogeneous(calib["R0_rect"]) @ _homogeneous(calib["Tr_velo_to_cam"])
    rect_to_velo = np.linalg.inv(velo_to_rect)
    h, w, l = label_boxes[:, 0], label_boxes[:, 1], label_boxes[:, 2]
    bottom = np.concatenate([label_boxes[:, 3:6], np.ones((len(label_boxes), 1))], axis=1)
    centre = (bottom @ rect_to_velo.T)[:, :3]
    centre[:, 2] += h / 2
    yaw = -label_boxes[:, 6] - math.pi / 2
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    return np.stack([centre[:, 0], centre[:, 1], centre[:, 2], l, w, h, yaw], axis=1)


def read_kitti_label(
    path: PathLike, calib: Mapping[str, np.ndarray], classes: Mapping[str, int] = KITTI_CLASSES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a KITTI ``label_2`` file as LiDAR boxes.

    Lines are ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y
    [score]``. Types not in ``classes`` (DontCare among them) are skipped.

    Args:
        path: ``label_2/NNNNNN.txt``.
        calib: From :func:`read_kitti_calib`.
        classes: KITTI type -> class id. Default :data:`KITTI_CLASSES`.

    Returns:
        ``(boxes, box_labels)``.

    Shapes:
        boxes ``[K, 7]`` float32 (see :func:`kitti_label_boxes_to_lidar`); box_labels ``[K]`` long.

    Raises:
        FileFormatError: Missing file, or a malformed line (wrong field count, a
            non-number, NaN/Inf, non-positive size of a kept box), with its number.
    """
    kept, labels = [], []
    for number, line in _lines(path, allow_empty=True):
        fields = line.split()
        try:
            if len(fields) not in (15, 16):
                raise ValueError(f"{len(fields)} fields, expected 15 or 16")
            values = np.array([float(v) for v in fields[1:]], dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError("NaN/Inf value")
        except ValueError as err:
            raise FileFormatError(f"label file {str(path)!r} line {number} is malformed ({err}): {line!r}") from None
        if fields[0] not in classes:
            continue
        if (values[7:10] <= 0).any():
            raise FileFormatError(f"label file {str(path)!r} line {number}: box size h, w, l must be positive")
        kept.append(values[7:14])
        labels.append(int(classes[fields[0]]))
    boxes = kitti_label_boxes_to_lidar(np.array(kept).reshape(-1, 7), calib)
    return torch.from_numpy(boxes.astype(np.float32)), torch.tensor(labels, dtype=torch.long)


class KittiDetection(Dataset):
    """KITTI 3D object detection scans with their boxes in the LiDAR frame.

    Each item is ``Data(pos, x, x_names=["intensity"], boxes, box_labels, sample_id)``.
    Samples of ``testing/`` (which has no ``label_2``) have no ``boxes``/``box_labels``.

    Args:
        root: The dataset root (holding ``training/``, ``testing/``, ``ImageSets/``).
        split: One of :data:`KITTI_SPLITS`. Default ``"train"``.
        classes: KITTI type -> class id. Default None: :data:`KITTI_CLASSES`.

    Shapes:
        pos ``[N, 3]``, x ``[N, 1]`` reflectance, boxes ``[K, 7]``, box_labels ``[K]``.

    Raises:
        InvalidInputError: An unknown split or bad ``classes``.
        FileFormatError: Missing folders or ImageSets file at construction; missing or
            corrupt scan, label or calibration files when an item is read.
    """

    def __init__(self, root: PathLike, split: str = "train", classes: Optional[Mapping[str, int]] = None) -> None:
        if split not in KITTI_SPLITS:
            raise InvalidInputError(f"split must be one of {KITTI_SPLITS}, got {split!r}")
        classes = dict(KITTI_CLASSES if classes is None else classes)
        if not all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in classes.items()):
            raise InvalidInputError(f"classes must map KITTI type names to ids >= 0, got {classes!r}")
        self.root = Path(root)
        self.split = split
        self.classes = classes
        self.folder = self.root / ("testing" if split in ("test", "testing") else "training")
        velodyne = self.folder / "velodyne"
        if not velodyne.is_dir():
            raise FileFormatError(f"KITTI folder {str(velodyne)!r} does not exist")
        if split in ("training", "testing"):
            self.sample_ids = sorted(p.stem for p in velodyne.glob("*.bin"))
        else:
            self.sample_ids = [line for _, line in _lines(self.root / "ImageSets" / f"{split}.txt")]
            for sid in self.sample_ids:
                if Path(sid).name != sid or len(sid.split()) != 1:
                    raise FileFormatError(f"ImageSets file for split {split!r} lists a bad sample id {sid!r}")
        self.has_labels = self.folder.name == "training" or (self.folder / "label_2").is_dir()

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, index: int) -> Data:
        sid = self.sample_ids[index]
        data = read_point_cloud(self.folder / "velodyne" / f"{sid}.bin", format="kitti")
        data.sample_id = sid
        if self.has_labels:
            calib = read_kitti_calib(self.folder / "calib" / f"{sid}.txt")
            data.boxes, data.box_labels = read_kitti_label(self.folder / "label_2" / f"{sid}.txt", calib, self.classes)
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: matrix.shape[0], : matrix.shape[1]] = matrix
    return out


def _lines(path: PathLike, allow_empty: bool = False) -> list[tuple[int, str]]:
    """Non-blank lines of a text file with their 1-based numbers."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise FileFormatError(f"file {str(path)!r} is not ASCII text: corrupt") from None
    lines = [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines and not allow_empty:
        raise FileFormatError(f"file {str(path)!r} is empty")
    return lines
