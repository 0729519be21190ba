"""Read and write point clouds as ``torch_geometric.data.Data``.

PLY and PCD are parsed and written by Open3D's tensor I/O (``open3d.t.io``), which keeps
every per-point attribute; we check headers and body sizes first (see ``_formats``)
because Open3D only prints a warning on truncated files. ``.xyz`` and the headerless
binary scan formats (KITTI, nuScenes, ScanNet, SemanticKITTI) are plain arrays, read and
written with numpy: Open3D's ``.xyz`` reader aborts the process on a truncated line.

Formats and the columns of ``x`` (also listed, per column, in ``data.x_names``):

========================  ==========================================  =====================
format (extension)        file content                                ``x`` columns
========================  ==========================================  =====================
``ply`` (.ply)            any float/int vertex properties             canonical order [1]_
``pcd`` (.pcd)            any fields (colours stored as 8-bit rgb)    canonical order [1]_
``xyz`` (.xyz)            text rows ``x y z``                         none
``kitti`` (.bin)          float32 x, y, z, reflectance                ``intensity``
``nuscenes`` (.pcd.bin)   float32 x, y, z, intensity, ring            ``intensity, ring``
``scannet`` (.bin)        float32 x, y, z, r, g, b (0..255)           ``red, green, blue``
``semantickitti`` (.bin)  as kitti, plus a ``.label`` file            ``intensity``
========================  ==========================================  =====================

.. [1] ``intensity, red, green, blue, nx, ny, nz``, then other attributes in name order;
   colours are floats in [0, 1] (8-bit colours are divided by 255).

Format inference (``format=None``): by extension; ``.pcd.bin`` is nuScenes; any other
``.bin`` is KITTI unless the file name contains ``scannet`` or ``nuscenes``. A KITTI-style
``.bin`` is read as SemanticKITTI (labels included) when its ``.label`` file exists next to
it or in ``../labels/``; ``format="kitti"`` reads the scan alone.

Empty clouds: PLY and PCD files with 0 points are valid and read as ``pos`` ``[0, 3]``
with no ``x``; writing 0 points to them writes a header-only file (x, y, z only). The
headerless formats cannot hold 0 points (an empty file is an error), so writing 0 points
to them raises.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.geometry.validation import check_index
from geo3d.io._data import attributes_from_x, check_cloud, x_from_attributes
from geo3d.io._formats import (
    MAX_SENSOR_RANGE,
    RECORD_FORMATS,
    RecordFormat,
    check_pcd_points,
    check_ply_points,
    check_readable,
    check_record_size,
    check_sensor_points,
    parse_pcd_header,
    parse_ply_header,
    point_cloud_format,
    read_head,
)
from geo3d.io.atomic import atomic_write, atomic_write_bytes
from geo3d.io.labels import encode_labels, read_labels

__all__ = ["read_point_cloud", "write_point_cloud", "label_path"]

PathLike = Union[str, "os.PathLike[str]"]

_EMPTY_HEADERS = {
    "ply": b"ply\nformat binary_little_endian 1.0\ncomment Created by geo3d\nelement vertex 0\n"
    b"property float x\nproperty float y\nproperty float z\nend_header\n",
    "pcd": b"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\n"
    b"TYPE F F F\nCOUNT 1 1 1\nWIDTH 0\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 0\nDATA binary\n",
}


def read_point_cloud(path: PathLike, format: Optional[str] = None) -> Data:
    """Read a point cloud file into a ``Data``.

    Args:
        path: The file.
        format: One of ``ply, pcd, xyz, kitti, nuscenes, scannet, semantickitti``.
            Default None: inferred from the file name (see the module docstring).

    Returns:
        ``Data(pos, x, x_names)``; ``x``/``x_names`` only when the file has per-point
        attributes. ``semantickitti`` adds ``y`` (raw semantic ids) and ``instance``
        (-1 for none) when the ``.label`` file is found next to the scan or in
        ``../labels/`` (the SemanticKITTI layout).

    Shapes:
        pos: ``[N, 3]`` float32; x: ``[N, F]`` float32; y, instance: ``[N]`` long.

    Raises:
        FileFormatError: Missing, empty, truncated or corrupt file, non-finite values,
            label count differing from the point count, or an unknown format.
    """
    fmt = point_cloud_format(path, format)
    if format is None and fmt == "kitti" and label_path(path) is not None:
        fmt = "semantickitti"  # a velodyne scan with its labels: read them too
    size = check_readable(path)
    if fmt in RECORD_FORMATS:
        data = _read_records(path, size, RECORD_FORMATS[fmt])
        if fmt == "semantickitti":
            _attach_labels(path, data)
        return data
    if fmt == "xyz":
        return _read_xyz(path)
    return _read_open3d(path, size, fmt)


def write_point_cloud(data: Data, path: PathLike, format: Optional[str] = None) -> None:
    """Write a point cloud ``Data`` to a file atomically.

    Columns of ``x`` are matched to the format's fields by ``data.x_names`` (see the
    module docstring). Fields the format needs but ``x`` lacks are written as 0; columns
    the format cannot hold are dropped with a ``UserWarning``. ``x`` without ``x_names``
    is taken column by column when its width equals a binary scan format's field count,
    else named ``feat_0 ..``. ``semantickitti`` also writes ``y``/``instance`` (if
    present) to a ``.label`` file next to the scan. Positions are stored as float32.

    Args:
        data: ``Data`` with ``pos`` and optionally ``x``, ``x_names`` (and ``y``,
            ``instance`` for semantickitti).
        path: The file to create or replace.
        format: As in :func:`read_point_cloud`. Default None: inferred from ``path``.

    Raises:
        InvalidInputError: Bad shapes, NaN/Inf, colours outside [0, 1], bad names, or 0
            points for a headerless format.
        FileFormatError: Unknown format, missing folder, or a failed write.
    """
    fmt = point_cloud_format(path, format)
    pos, x, names = check_cloud(data)
    if fmt in RECORD_FORMATS or fmt == "xyz":
        if len(pos) == 0:
            raise InvalidInputError(
                f"data has 0 points: the headerless {fmt} format cannot store an empty cloud"
            )
    if fmt in RECORD_FORMATS:
        spec = RECORD_FORMATS[fmt]
        if x is not None and getattr(data, "x_names", None) is None and x.shape[1] == len(spec.columns):
            names = list(spec.columns)
        labels = None
        if fmt == "semantickitti" and getattr(data, "y", None) is not None:
            check_index(data.y, "data.y", len(pos))
            labels = encode_labels(data.y, getattr(data, "instance", None), ("data.y", "data.instance"))
        _warn_dropped(fmt, [n for n in names if n not in spec.columns])
        _write_records(path, pos, x, names, spec)
        if labels is not None:
            atomic_write_bytes(Path(path).with_suffix(".label"), labels)
    elif fmt == "xyz":
        _warn_dropped(fmt, names)
        with atomic_write(path) as tmp:
            np.savetxt(tmp, pos, fmt="%.9g")  # 9 significant digits: exact for float32
    else:
        _write_open3d(path, fmt, pos, x, names)


def label_path(scan: PathLike) -> Optional[Path]:
    """Return the ``.label`` file of a SemanticKITTI scan, or None if there is none.

    Looks next to the scan (``NNNNNN.label``), then in ``../labels/`` as in the dataset
    layout ``sequences/SS/{velodyne,labels}/``.
    """
    scan = Path(scan)
    for candidate in (scan.with_suffix(".label"), scan.parent.parent / "labels" / f"{scan.stem}.label"):
        if candidate.is_file():
            return candidate
    return None


# ----------------------------------------------------------------------------- readers


def _read_records(path: PathLike, size: int, spec: RecordFormat) -> Data:
    n = check_record_size(path, size, spec.record_size, spec.name)
    records = np.fromfile(path, dtype="<f4").reshape(n, 3 + len(spec.columns))
    check_sensor_points(path, records, spec.name)
    features = records[:, 3:]
    if spec.scale != 1.0:
        if features.min() < 0 or features.max() > spec.scale:
            raise FileFormatError(
                f"{spec.name} file {str(path)!r} has feature values outside [0, {spec.scale:g}]: corrupt"
            )
        features = features / np.float32(spec.scale)
    return Data(
        pos=torch.from_numpy(np.ascontiguousarray(records[:, :3])),
        x=torch.from_numpy(np.ascontiguousarray(features)),
        x_names=list(spec.columns),
    )


def _attach_labels(path: PathLike, data: Data) -> None:
    labels = label_path(path)
    if labels is None:
        return
    semantic, instance = read_labels(labels)
    if len(semantic) != data.num_nodes:
        raise FileFormatError(
            f"label file {str(labels)!r} has {len(semantic)} labels but scan {str(path)!r} "
            f"has {data.num_nodes} points"
        )
    data.y, data.instance = semantic, instance


def _read_xyz(path: PathLike) -> Data:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on a file with no rows
            values = np.loadtxt(path, dtype=np.float64, ndmin=2, comments="#")
    except (ValueError, UnicodeDecodeError) as err:
        raise FileFormatError(f"xyz file {str(path)!r} is corrupt or truncated: {err}") from None
    if values.shape[0] == 0 or values.shape[1] != 3:
        raise FileFormatError(
            f"xyz file {str(path)!r} must hold rows of 3 numbers, got shape {list(values.shape)}"
        )
    if not np.isfinite(values).all():
        raise FileFormatError(f"xyz file {str(path)!r} holds NaN/Inf coordinates")
    return Data(pos=torch.from_numpy(values.astype(np.float32)))


def _read_open3d(path: PathLike, size: int, fmt: str) -> Data:
    import open3d as o3d

    head = read_head(path, size)
    if fmt == "ply":
        count = check_ply_points(path, parse_ply_header(path, head), size)
    else:
        count = check_pcd_points(path, parse_pcd_header(path, head), size)
    if count == 0:
        return Data(pos=torch.zeros(0, 3))
    try:
        cloud = o3d.t.io.read_point_cloud(str(path), format=fmt)
    except RuntimeError as err:
        raise FileFormatError(f"{fmt} file {str(path)!r} could not be read: {err}") from None
    attributes = {key: cloud.point[key].cpu().numpy() for key in cloud.point}
    pos = attributes.get("positions")
    if pos is None or len(pos) != count:
        got = 0 if pos is None else len(pos)
        raise FileFormatError(
            f"{fmt} file {str(path)!r} is corrupt: its header promises {count} points, {got} could be read"
        )
    x, names = x_from_attributes(attributes)
    for key, value in attributes.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise FileFormatError(f"{fmt} file {str(path)!r} holds NaN/Inf values in {key!r}")
    data = Data(pos=torch.from_numpy(pos.astype(np.float32)))
    if x is not None:
        data.x, data.x_names = x, names
    return data


# ----------------------------------------------------------------------------- writers


def _warn_dropped(fmt: str, dropped: list[str]) -> None:
    if dropped:
        warnings.warn(f"the {fmt} format cannot hold x columns {dropped}; they are not written", stacklevel=3)


def _write_records(
    path: PathLike, pos: np.ndarray, x: Optional[np.ndarray], names: list[str], spec: RecordFormat
) -> None:
    if np.abs(pos).max() > MAX_SENSOR_RANGE:
        raise InvalidInputError(
            f"data.pos has coordinates beyond {MAX_SENSOR_RANGE:g} m, which the {spec.name} reader rejects"
        )
    records = np.zeros((len(pos), 3 + len(spec.columns)), dtype="<f4")
    records[:, :3] = pos
    for j, column in enumerate(spec.columns):
        if column in names:
            records[:, 3 + j] = x[:, names.index(column)] * np.float32(spec.scale)
    atomic_write_bytes(path, records.tobytes())


def _write_open3d(path: PathLike, fmt: str, pos: np.ndarray, x: Optional[np.ndarray], names: list[str]) -> None:
    import open3d as o3d

    if len(pos) == 0:
        atomic_write_bytes(path, _EMPTY_HEADERS[fmt])
        return
    cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(np.ascontiguousarray(pos)))
    for key, value in attributes_from_x(x, names).items():
        cloud.point[key] = o3d.core.Tensor(value)
    with atomic_write(path, suffix=f".{fmt}") as tmp:
        if not o3d.t.io.write_point_cloud(str(tmp), cloud, write_ascii=False, compressed=False):
            raise FileFormatError(f"Open3D failed to write {fmt} file {str(path)!r}")
