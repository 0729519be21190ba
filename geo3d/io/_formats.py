"""File format registry, format inference, and the structural checks done before parsing.

Open3D 0.20 and trimesh parse the files, but neither reports every broken file: Open3D
returns a full-size cloud from a truncated PLY or ASCII PCD (printing only a warning) and
aborts the whole process on a truncated ``.xyz``; trimesh returns an empty mesh from a
garbage STL. So we parse PLY and PCD headers here and check that the body holds what the
header promises before handing the file on. These are our own small parsers of the
published formats (PLY: Turk 1994; PCD v0.7: the Point Cloud Library documentation).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from geo3d.errors import FileFormatError

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class RecordFormat:
    """A headerless binary format of float32 records: x, y, z, then ``columns``.

    ``scale`` divides the feature columns on reading (ScanNet stores colours 0..255).
    """

    name: str
    columns: tuple[str, ...]
    scale: float = 1.0

    @property
    def record_size(self) -> int:
        """Bytes per point."""
        return 4 * (3 + len(self.columns))


RECORD_FORMATS: dict[str, RecordFormat] = {
    "kitti": RecordFormat("kitti", ("intensity",)),
    "nuscenes": RecordFormat("nuscenes", ("intensity", "ring")),
    "scannet": RecordFormat("scannet", ("red", "green", "blue"), 255.0),
    "semantickitti": RecordFormat("semantickitti", ("intensity",)),
}
POINT_CLOUD_FORMATS: tuple[str, ...] = ("ply", "pcd", "xyz") + tuple(RECORD_FORMATS)
MESH_FORMATS: tuple[str, ...] = ("ply", "off", "obj", "stl")

# A sensor-frame scan with a coordinate beyond 100 km is garbage read as float32.
MAX_SENSOR_RANGE = 1.0e5

_HEADER_LIMIT = 1 << 20


# --------------------------------------------------------------------------- formats


def _normalise_format(format: object, supported: Sequence[str], what: str) -> str:
    if not isinstance(format, str) or format.lower().lstrip(".") not in supported:
        raise FileFormatError(
            f"unknown {what} format {format!r}; supported formats: {', '.join(supported)}"
        )
    return format.lower().lstrip(".")


def point_cloud_format(path: PathLike, format: Optional[str]) -> str:
    """Return the point cloud format of ``path``: ``format`` if given, else from the name.

    ``.ply``/``.pcd``/``.xyz`` by extension; ``.pcd.bin`` is nuScenes; any other ``.bin``
    is KITTI unless the file name contains ``scannet`` or ``nuscenes``.
    """
    if format is not None:
        return _normalise_format(format, POINT_CLOUD_FORMATS, "point cloud")
    name = Path(path).name.lower()
    if name.endswith(".pcd.bin"):
        return "nuscenes"
    ext = Path(name).suffix
    if ext in (".ply", ".pcd", ".xyz"):
        return ext[1:]
    if ext == ".bin":
        hits = [f for f in ("scannet", "nuscenes") if f in name]
        if len(hits) > 1:
            raise FileFormatError(
                f"cannot infer the format of {str(path)!r}: its name mentions {hits}; pass format="
            )
        return hits[0] if hits else "kitti"
    raise FileFormatError(
        f"cannot infer the point cloud format of {str(path)!r} from its extension {ext!r}; "
        f"supported: .ply, .pcd, .xyz, .pcd.bin (nuscenes), .bin (kitti; scannet/nuscenes "
        f"when the name says so), or pass format= one of {', '.join(POINT_CLOUD_FORMATS)}"
    )


def mesh_format(path: PathLike, format: Optional[str]) -> str:
    """Return the mesh format of ``path``: ``format`` if given, else its extension."""
    if format is not None:
        return _normalise_format(format, MESH_FORMATS, "mesh")
    ext = Path(path).suffix.lower()
    if ext[1:] in MESH_FORMATS:
        return ext[1:]
    raise FileFormatError(
        f"cannot infer the mesh format of {str(path)!r} from its extension {ext!r}; "
        f"supported formats: {', '.join(MESH_FORMATS)} (or pass format=)"
    )


def check_readable(path: PathLike) -> int:
    """Raise FileFormatError unless ``path`` is an existing, non-empty file; return its size."""
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"file {str(p)!r} does not exist")
    if not p.is_file():
        raise FileFormatError(f"{str(p)!r} is not a file")
    size = p.stat().st_size
    if size == 0:
        raise FileFormatError(f"file {str(p)!r} is empty (0 bytes)")
    return size


def check_record_size(path: PathLike, size: int, record_size: int, what: str) -> int:
    """Return the number of records, raising if ``size`` is not a multiple of ``record_size``."""
    if size % record_size:
        raise FileFormatError(
            f"{what} file {str(path)!r} has {size} bytes, not a multiple of the record size "
            f"{record_size} bytes: truncated or not a {what} file"
        )
    return size // record_size


def check_sensor_points(path: PathLike, records: np.ndarray, what: str) -> None:
    """Raise unless every value is finite and every coordinate within the sensor range."""
    bad = ~np.isfinite(records).all(axis=1)
    if bad.any():
        raise FileFormatError(
            f"{what} file {str(path)!r} holds NaN/Inf values in {int(bad.sum())} of "
            f"{len(records)} points: corrupt or not a {what} file"
        )
    far = (np.abs(records[:, :3]) > MAX_SENSOR_RANGE).any(axis=1)
    if far.any():
        raise FileFormatError(
            f"{what} file {str(path)!r} has {int(far.sum())} points farther than "
            f"{MAX_SENSOR_RANGE:g} m: corrupt or not a {what} file"
        )


def read_head(path: PathLike, size: int) -> bytes:
    """Read the first bytes of a file, enough for any header."""
    with open(path, "rb") as fh:
        return fh.read(min(size, _HEADER_LIMIT))


# ------------------------------------------------------------------------------- PLY

_PLY_TYPES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1,
    "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4,
    "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip
_PLY_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")


@dataclass
class PlyElement:
    """One ``element`` of a PLY header."""

    name: str
    count: int
    properties: list[tuple[str, str]]  # (name, type); type "list" for list properties

    @property
    def has_list(self) -> bool:
        return any(t == "list" for _, t in self.properties)

    @property
    def row_size(self) -> int:
        return sum(_PLY_TYPES[t] for _, t in self.properties)


@dataclass
class PlyHeader:
    """A parsed PLY header; ``size`` is its length in bytes, the body starts there."""

    format: str
    elements: list[PlyElement]
    size: int

    def element(self, name: str) -> Optional[PlyElement]:
        return next((e for e in self.elements if e.name == name), None)


def _header_end(path: PathLike, head: bytes, marker: bytes, what: str) -> int:
    m = re.search(marker, head)
    if m is None:
        raise FileFormatError(f"{what} file {str(path)!r} has no complete header: truncated or corrupt")
    return m.end()


def parse_ply_header(path: PathLike, head: bytes) -> PlyHeader:
    """Parse the header of a PLY file from its first bytes ``head``."""
    if not re.match(rb"ply\r?\n", head):
        raise FileFormatError(f"{str(path)!r} is not a PLY file: it does not start with 'ply'")
    end = _header_end(path, head, rb"\nend_header[ \t]*\r?\n", "PLY")
    try:
        lines = head[:end].decode("ascii").splitlines()[1:-1]
    except UnicodeDecodeError:
        raise FileFormatError(f"PLY file {str(path)!r} has a non-ASCII header: corrupt") from None
    fmt, elements = None, []
    for number, line in enumerate(lines, start=2):
        words = line.split()
        bad = FileFormatError(f"PLY file {str(path)!r}: malformed header line {number}: {line!r}")
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _PLY_FORMATS:
                raise bad
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise bad
            elements.append(PlyElement(words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise bad
            if len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1].properties.append((words[2], words[1]))
            elif len(words) == 5 and words[1] == "list" and {words[2], words[3]} <= set(_PLY_TYPES):
                elements[-1].properties.append((words[4], "list"))
            else:
                raise bad
        else:
            raise bad
    if fmt is None:
        raise FileFormatError(f"PLY file {str(path)!r} has no 'format' line in its header")
    return PlyHeader(fmt, elements, end)


def check_ply_points(path: PathLike, header: PlyHeader, size: int) -> int:
    """Check that a PLY file holds its whole ``vertex`` element; return the vertex count."""
    vertex = header.element("vertex")
    if vertex is None:
        raise FileFormatError(f"PLY file {str(path)!r} has no 'vertex' element")
    names = [n for n, _ in vertex.properties]
    if not {"x", "y", "z"} <= set(names) or vertex.has_list:
        raise FileFormatError(
            f"PLY file {str(path)!r}: the vertex element needs scalar x, y, z properties, "
            f"got {names}"
        )
    if header.format == "ascii":
        _check_ascii_rows(path, "PLY", header.size, _lines_before(header, vertex), vertex.count, len(names))
        return vertex.count
    need = header.size
    for element in header.elements:  # fixed-size elements up to the first list element
        if element.has_list:
            break
        need += element.count * element.row_size
    if size < need:
        raise FileFormatError(
            f"PLY file {str(path)!r} is truncated: {size} bytes, its header promises at least {need}"
        )
    return vertex.count


def _lines_before(header: PlyHeader, element: PlyElement) -> int:
    before = 0
    for e in header.elements:
        if e is element:
            return before
        before += e.count
    return before


def _check_ascii_rows(path: PathLike, what: str, start: int, skip: int, count: int, width: int) -> None:
    """Check that ``count`` text rows of ``width`` numbers follow ``skip`` rows after ``start``."""
    with open(path, "rb") as fh:
        fh.seek(start)
        rows = [r for r in fh.read().splitlines() if r.strip()][skip : skip + count]
    if len(rows) < count:
        raise FileFormatError(
            f"{what} file {str(path)!r} is truncated: {len(rows)} of {count} point rows present"
        )
    for number, row in enumerate(rows):
        if len(row.split()) != width:
            raise FileFormatError(
                f"{what} file {str(path)!r}: point row {number} has {len(row.split())} values, "
                f"expected {width}: truncated or corrupt"
            )
    try:
        np.array(b" ".join(rows).split()).astype(np.float64)
    except ValueError:
        raise FileFormatError(f"{what} file {str(path)!r} has non-numeric point values") from None


# ------------------------------------------------------------------------------- PCD

_PCD_DATA = ("ascii", "binary", "binary_compressed")


@dataclass
class PcdHeader:
    """A parsed PCD header; the body starts at ``size`` bytes."""

    fields: list[str]
    sizes: list[int]
    counts: list[int]
    points: int
    data: str
    size: int


def parse_pcd_header(path: PathLike, head: bytes) -> PcdHeader:
    """Parse the header of a PCD (v0.5-0.7) file from its first bytes ``head``."""
    end = _header_end(path, head, rb"(?m)^DATA[ \t]+\S+[ \t]*\r?\n", "PCD")
    try:
        lines = head[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise FileFormatError(f"{str(path)!r} is not a PCD file: non-ASCII header") from None
    entries: dict[str, list[str]] = {}
    for line in lines:
        words = line.split()
        if words and not words[0].startswith("#"):
            entries[words[0].upper()] = words[1:]
    try:
        fields = entries["FIELDS"]
        sizes = [int(v) for v in entries["SIZE"]]
        counts = [int(v) for v in entries.get("COUNT", ["1"] * len(fields))]
        if "POINTS" in entries:
            points = int(entries["POINTS"][0])
        else:
            points = int(entries["WIDTH"][0]) * int(entries["HEIGHT"][0])
        data = entries["DATA"][0].lower()
    except (KeyError, IndexError, ValueError):
        raise FileFormatError(
            f"{str(path)!r} is not a PCD file: header lacks or garbles FIELDS/SIZE/POINTS/DATA"
        ) from None
    if not (len(sizes) == len(counts) == len(entries.get("TYPE", [])) == len(fields)):
        raise FileFormatError(f"PCD file {str(path)!r}: FIELDS, SIZE, TYPE and COUNT differ in length")
    if data not in _PCD_DATA or points < 0 or min(sizes + counts, default=1) < 1:
        raise FileFormatError(f"PCD file {str(path)!r}: bad DATA, POINTS, SIZE or COUNT value")
    if not {"x", "y", "z"} <= set(fields):
        raise FileFormatError(f"PCD file {str(path)!r} has no x, y, z fields (got {fields})")
    return PcdHeader(fields, sizes, counts, points, data, end)


def check_pcd_points(path: PathLike, header: PcdHeader, size: int) -> int:
    """Check that a PCD body holds every point its header promises; return the count."""
    row = sum(s * c for s, c in zip(header.sizes, header.counts))
    body = size - header.size
    if header.data == "ascii":
        _check_ascii_rows(path, "PCD", header.size, 0, header.points, sum(header.counts))
    elif header.data == "binary":
        if body < header.points * row:
            raise FileFormatError(
                f"PCD file {str(path)!r} is truncated: body of {body} bytes, its header "
                f"promises {header.points} points of {row} bytes"
            )
    elif header.points:
        with open(path, "rb") as fh:
            fh.seek(header.size)
            sizes = fh.read(8)
        if len(sizes) < 8:
            raise FileFormatError(f"PCD file {str(path)!r} is truncated in its compressed body")
        compressed, raw = struct.unpack("<II", sizes)
        if body < 8 + compressed or raw != header.points * row:
            raise FileFormatError(
                f"PCD file {str(path)!r} is truncated or corrupt: compressed body of "
                f"{body - 8} bytes, header says {compressed}"
            )
    return header.points

