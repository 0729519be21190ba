"""Tests for geo3d.io.point_cloud: round trips, format inference, real scans, bad input."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import label_path, read_point_cloud, write_point_cloud
from geo3d.io._formats import point_cloud_format

REAL = Path(__file__).resolve().parents[2].parent / "shared/data/real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real scans not found at {REAL}")


def _cloud(n: int = 64, seed: int = 0, names=("intensity", "red", "green", "blue", "nx", "ny", "nz", "ring")) -> Data:
    g = torch.Generator().manual_seed(seed)
    pos = (torch.rand(n, 3, generator=g) - 0.5) * 120
    pos[0] = torch.tensor([1e-7, -3.4e-5, 0.0])  # small values stress text formats
    cols = []
    for name in names:
        if name in ("red", "green", "blue"):
            cols.append(torch.randint(0, 256, (n, 1), generator=g).float() / 255)  # 8-bit colours
        elif name == "ring":
            cols.append(torch.randint(0, 32, (n, 1), generator=g).float())
        else:
            cols.append(torch.rand(n, 1, generator=g) * 2 - 1)
    if not cols:
        return Data(pos=pos)
    return Data(pos=pos, x=torch.cat(cols, 1), x_names=list(names))


def _column(data: Data, name: str) -> torch.Tensor:
    return data.x[:, data.x_names.index(name)]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["ply", "pcd"])
def test_open3d_formats_round_trip_every_attribute_exactly(tmp_path, fmt):
    data = _cloud()
    path = tmp_path / f"cloud.{fmt}"
    write_point_cloud(data, path)
    back = read_point_cloud(path)
    assert back.pos.dtype == torch.float32 and torch.equal(back.pos, data.pos)
    # canonical column order, whatever order was written
    assert back.x_names == ["intensity", "red", "green", "blue", "nx", "ny", "nz", "ring"]
    for name in data.x_names:
        assert torch.equal(_column(back, name), _column(data, name)), name


def test_pcd_quantises_colours_to_8_bits(tmp_path):
    data = Data(pos=torch.rand(50, 3), x=torch.rand(50, 3), x_names=["red", "green", "blue"])
    write_point_cloud(data, tmp_path / "c.pcd")
    back = read_point_cloud(tmp_path / "c.pcd")
    assert torch.allclose(back.x, data.x, atol=0.5 / 255 + 1e-7)
    assert torch.equal(torch.round(back.x * 255), back.x * 255)  # 8-bit levels
    write_point_cloud(data, tmp_path / "c.ply")  # PLY keeps float colours
    assert torch.equal(read_point_cloud(tmp_path / "c.ply").x, data.x)


def test_written_ply_and_pcd_are_read_by_open3d_itself(tmp_path):
    data = _cloud(names=("intensity", "nx", "ny", "nz"))
    for fmt in ("ply", "pcd"):
        write_point_cloud(data, tmp_path / f"c.{fmt}")
        cloud = o3d.t.io.read_point_cloud(str(tmp_path / f"c.{fmt}"))
        np.testing.assert_array_equal(cloud.point.positions.numpy(), data.pos.numpy())
        np.testing.assert_array_equal(cloud.point.intensity.numpy()[:, 0], _column(data, "intensity").numpy())


def test_xyz_round_trip_is_exact_for_float32_and_drops_x_with_a_warning(tmp_path):
    data = _cloud()
    with pytest.warns(UserWarning, match="xyz format cannot hold"):
        write_point_cloud(data, tmp_path / "c.xyz")
    back = read_point_cloud(tmp_path / "c.xyz")
    assert torch.equal(back.pos, data.pos)
    assert back.x is None and "x_names" not in back


def test_ascii_ply_written_by_open3d_is_read_closely(tmp_path):
    pos = np.random.default_rng(1).random((30, 3)).astype(np.float32)
    o3d.t.io.write_point_cloud(str(tmp_path / "a.ply"), o3d.t.geometry.PointCloud(pos), write_ascii=True)
    assert b"format ascii" in (tmp_path / "a.ply").read_bytes()[:60]
    np.testing.assert_allclose(read_point_cloud(tmp_path / "a.ply").pos.numpy(), pos, rtol=0, atol=1e-6)  # Open3D writes 6 decimals


def test_ply_with_8_bit_colours_from_another_tool(tmp_path):
    header = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
        b"property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    body = np.array([(1, 2, 3, 255, 0, 128), (4, 5, 6, 10, 20, 30)], dtype="<f4,<f4,<f4,u1,u1,u1").tobytes()
    (tmp_path / "u.ply").write_bytes(header + body)
    back = read_point_cloud(tmp_path / "u.ply")
    assert back.x_names == ["red", "green", "blue"]
    expected = torch.tensor([[255, 0, 128], [10, 20, 30]], dtype=torch.float32) / 255
    assert torch.equal(back.x, expected)


@pytest.mark.parametrize(
    "fmt, name, columns",
    [
        ("kitti", "000001.bin", ["intensity"]),
        ("nuscenes", "sweep.pcd.bin", ["intensity", "ring"]),
        ("scannet", "scannet_scene.bin", ["red", "green", "blue"]),
        ("semantickitti", "000001.bin", ["intensity"]),
    ],
)
def test_binary_scan_formats_round_trip_exactly(tmp_path, fmt, name, columns):
    data = _cloud(names=columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped: no warning
        write_point_cloud(data, tmp_path / name, format=fmt)
    raw = np.fromfile(tmp_path / name, dtype="<f4").reshape(len(data.pos), -1)
    np.testing.assert_array_equal(raw[:, :3], data.pos.numpy())  # the layout, independently
    back = read_point_cloud(tmp_path / name, format=fmt)
    assert back.x_names == columns
    assert torch.equal(back.pos, data.pos) and torch.equal(back.x, data.x)
    assert point_cloud_format(tmp_path / name, None) == ("kitti" if fmt == "semantickitti" else fmt)


def test_scan_format_fills_missing_fields_with_zero_and_warns_on_dropped(tmp_path):
    data = _cloud(names=("red", "green", "blue"))
    with pytest.warns(UserWarning, match=r"\['red', 'green', 'blue'\]"):
        write_point_cloud(data, tmp_path / "a.bin")
    back = read_point_cloud(tmp_path / "a.bin")
    assert torch.equal(back.x, torch.zeros(len(data.pos), 1))
    write_point_cloud(Data(pos=data.pos), tmp_path / "b.pcd.bin")
    assert torch.equal(read_point_cloud(tmp_path / "b.pcd.bin").x, torch.zeros(len(data.pos), 2))


def test_x_without_names(tmp_path):
    pos, x = torch.rand(10, 3), torch.rand(10, 1)
    write_point_cloud(Data(pos=pos, x=x), tmp_path / "k.bin")  # width matches: reflectance
    assert torch.equal(read_point_cloud(tmp_path / "k.bin").x, x)
    write_point_cloud(Data(pos=pos, x=torch.rand(10, 2)), tmp_path / "f.ply")
    assert read_point_cloud(tmp_path / "f.ply").x_names == ["feat_0", "feat_1"]


def test_float64_positions_are_stored_as_float32(tmp_path):
    pos = torch.rand(20, 3, dtype=torch.float64)
    write_point_cloud(Data(pos=pos), tmp_path / "d.ply")
    assert torch.equal(read_point_cloud(tmp_path / "d.ply").pos, pos.float())


def test_write_does_not_mutate_its_input(tmp_path):
    data = _cloud(names=("red", "green", "blue", "intensity"))
    before = {k: (v.clone() if torch.is_tensor(v) else list(v)) for k, v in data.items()}
    for name in ("a.ply", "a.pcd", "a.bin", "a.scannet.bin"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_point_cloud(data, tmp_path / name)
    for key, value in before.items():
        assert (torch.equal(data[key], value) if torch.is_tensor(value) else data[key] == value), key


@settings(max_examples=15, deadline=None)
@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 40), st.just(4)),
               elements=st.floats(-1e4, 1e4, width=32)),  # fmt: skip
    st.sampled_from(["c.ply", "c.pcd", "c.bin", "c.xyz"]),
)
def test_property_any_float32_cloud_round_trips_exactly(values, name):
    data = Data(pos=torch.from_numpy(values[:, :3].copy()), x=torch.from_numpy(values[:, 3:].copy()), x_names=["intensity"])
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_point_cloud(data, Path(folder) / name)
        back = read_point_cloud(Path(folder) / name)
    assert torch.equal(back.pos, data.pos)
    if name != "c.xyz":
        assert torch.equal(back.x, data.x)


# --------------------------------------------------------------------------- empty clouds


@pytest.mark.parametrize("fmt", ["ply", "pcd"])
def test_empty_cloud_round_trips_through_header_only_files(tmp_path, fmt):
    write_point_cloud(Data(pos=torch.zeros(0, 3), x=torch.zeros(0, 1), x_names=["intensity"]), tmp_path / f"e.{fmt}")
    back = read_point_cloud(tmp_path / f"e.{fmt}")
    assert back.pos.shape == (0, 3) and back.pos.dtype == torch.float32 and back.x is None


@pytest.mark.parametrize("name", ["e.xyz", "e.bin", "e.pcd.bin", "e.scannet.bin"])
def test_empty_cloud_cannot_be_written_to_headerless_formats(tmp_path, name):
    with pytest.raises(InvalidInputError, match="0 points"):
        write_point_cloud(Data(pos=torch.zeros(0, 3)), tmp_path / name)
    assert not (tmp_path / name).exists()


# --------------------------------------------------------------------------- inference


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.ply", "ply"), ("A.PLY", "ply"), ("b.pcd", "pcd"), ("c.xyz", "xyz"),
        ("000000.bin", "kitti"), ("n015-2018__LIDAR_TOP__1533.pcd.bin", "nuscenes"),
        ("nuscenes_lidar_top.bin", "nuscenes"), ("scannet_scene0000_00.bin", "scannet"),
        ("ScanNet_1.BIN", "scannet"),
    ],
)  # fmt: skip
def test_format_inference(name, expected):
    assert point_cloud_format(Path("/some/dir") / name, None) == expected


def test_format_inference_failures_list_the_supported_formats():
    with pytest.raises(FileFormatError, match="supported") as err:
        point_cloud_format("cloud.las", None)
    assert "cloud.las" in str(err.value)
    with pytest.raises(FileFormatError, match="ambiguous|mentions"):
        point_cloud_format("scannet_vs_nuscenes.bin", None)
    with pytest.raises(FileFormatError, match="ply, pcd, xyz, kitti, nuscenes, scannet, semantickitti"):
        read_point_cloud("x.bin", format="las")
    with pytest.raises(FileFormatError, match="supported"):
        write_point_cloud(_cloud(), "/tmp/x.ply", format=3)


def test_explicit_format_overrides_the_extension(tmp_path):
    data = _cloud(names=("intensity",))
    write_point_cloud(data, tmp_path / "scan.dat", format="kitti")
    assert torch.equal(read_point_cloud(tmp_path / "scan.dat", format="KITTI").pos, data.pos)
    write_point_cloud(data, tmp_path / "cloud.data", format="ply")
    assert torch.equal(read_point_cloud(tmp_path / "cloud.data", format="ply").x, data.x)


# --------------------------------------------------------------------------- real scans


@needs_real
@pytest.mark.parametrize(
    "name, count, names, high",
    [
        ("kitti_000008.bin", 17238, ["intensity"], [1]),
        ("nuscenes_lidar_top.bin", 34688, ["intensity", "ring"], [255, 31]),
        ("scannet_scene0000_00.bin", 40684, ["red", "green", "blue"], [1, 1, 1]),
    ],
)
def test_real_scans_load_with_their_point_counts_and_rewrite_byte_identically(tmp_path, name, count, names, high):
    data = read_point_cloud(REAL / name)
    assert data.pos.shape == (count, 3) and data.x.shape == (count, len(names)) and data.x_names == names
    raw = np.fromfile(REAL / name, dtype="<f4").reshape(count, -1)
    np.testing.assert_array_equal(data.pos.numpy(), raw[:, :3])
    assert float(data.x.min()) >= 0 and data.x.max(0).values.tolist() <= high
    write_point_cloud(data, tmp_path / name)
    assert (tmp_path / name).read_bytes() == (REAL / name).read_bytes()


@needs_real
def test_real_semantickitti_scan_with_labels_in_the_same_folder():
    data = read_point_cloud(REAL / "semantickitti/000000.bin", format="semantickitti")
    assert data.pos.shape == (50, 3) and data.y.shape == (50,) and data.instance.shape == (50,)
    raw = np.fromfile(REAL / "semantickitti/000000.label", dtype="<u4")
    np.testing.assert_array_equal(data.y.numpy(), raw & 0xFFFF)
    assert set(data.y.tolist()) <= {0, 50, 52, 70, 71, 80} and data.instance.dtype == torch.long
    inferred = read_point_cloud(REAL / "semantickitti/000000.bin")  # .label found beside it
    assert torch.equal(inferred.y, data.y) and torch.equal(inferred.instance, data.instance)
    assert "y" not in read_point_cloud(REAL / "semantickitti/000000.bin", format="kitti")


# --------------------------------------------------------------------------- SemanticKITTI


def test_semantickitti_writes_and_finds_labels(tmp_path):
    data = _cloud(n=20, names=("intensity",))
    data.y = torch.tensor([0, 10, 40, 50, 252] * 4)
    data.instance = torch.tensor([-1, 7, -1, -1, 65535] * 4)
    write_point_cloud(data, tmp_path / "000003.bin", format="semantickitti")
    assert label_path(tmp_path / "000003.bin") == tmp_path / "000003.label"
    back = read_point_cloud(tmp_path / "000003.bin", format="semantickitti")
    assert torch.equal(back.y, data.y) and torch.equal(back.instance, data.instance)


def test_semantickitti_labels_found_in_dataset_layout(tmp_path):
    (tmp_path / "velodyne").mkdir()
    (tmp_path / "labels").mkdir()
    np.zeros((5, 4), dtype="<f4").tofile(tmp_path / "velodyne/000000.bin")
    (np.array([40, 40, 10, 10, 0], dtype="<u4") | (np.array([0, 0, 3, 3, 0], dtype="<u4") << 16)).tofile(
        tmp_path / "labels/000000.label"
    )
    back = read_point_cloud(tmp_path / "velodyne/000000.bin", format="semantickitti")
    assert torch.equal(read_point_cloud(tmp_path / "velodyne/000000.bin").y, back.y)
    assert back.y.tolist() == [40, 40, 10, 10, 0] and back.instance.tolist() == [-1, -1, 3, 3, -1]


def test_semantickitti_label_count_mismatch(tmp_path):
    np.zeros((5, 4), dtype="<f4").tofile(tmp_path / "000000.bin")
    np.zeros(4, dtype="<u4").tofile(tmp_path / "000000.label")
    with pytest.raises(FileFormatError, match="4 labels.*5 points"):
        read_point_cloud(tmp_path / "000000.bin", format="semantickitti")


# --------------------------------------------------------------------------- bad input: reading

ALL_NAMES = ["c.ply", "c.pcd", "c.xyz", "c.bin", "c.pcd.bin", "c.scannet.bin"]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_missing_and_empty_files(tmp_path, name):
    with pytest.raises(FileFormatError, match="does not exist") as err:
        read_point_cloud(tmp_path / name)
    assert str(tmp_path / name) in str(err.value)
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty") as err:
        read_point_cloud(tmp_path / name)
    assert str(tmp_path / name) in str(err.value)
    with pytest.raises(FileFormatError, match="not a file"):
        read_point_cloud(tmp_path, format="ply")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_garbage_bytes(tmp_path, name):
    garbage = np.random.default_rng(7).integers(0, 256, 4800, dtype=np.uint8).tobytes()  # 4800 = 16*20*15
    (tmp_path / name).write_bytes(garbage)
    with pytest.raises(FileFormatError) as err:
        read_point_cloud(tmp_path / name)
    assert str(tmp_path / name) in str(err.value)


@pytest.mark.parametrize("name, size", [("c.bin", 16), ("c.pcd.bin", 20), ("c.scannet.bin", 24)])
def test_binary_scan_cut_mid_record(tmp_path, name, size):
    write_point_cloud(_cloud(names=()), tmp_path / name)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) - 5])
    with pytest.raises(FileFormatError, match=f"{len(data) - 5} bytes.*record size {size}") as err:
        read_point_cloud(tmp_path / name)
    assert str(tmp_path / name) in str(err.value)


def _o3d_write(path: Path, **options) -> None:
    cloud = o3d.t.geometry.PointCloud(np.random.default_rng(2).random((200, 3)).astype(np.float32))
    cloud.point.intensity = np.ones((200, 1), np.float32)
    assert o3d.t.io.write_point_cloud(str(path), cloud, **options)


@pytest.mark.parametrize(
    "name, options",
    [
        ("c.ply", {}),
        ("c.ply", {"write_ascii": True}),
        ("c.pcd", {}),
        ("c.pcd", {"write_ascii": True}),
        ("c.pcd", {"compressed": True}),
    ],
)
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_ply_and_pcd(tmp_path, name, options, keep):
    # Open3D itself reads such files without an error (a full-size cloud, or empty)
    _o3d_write(tmp_path / name, **options)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(FileFormatError, match="truncated|header") as err:
        read_point_cloud(tmp_path / name)
    assert str(tmp_path / name) in str(err.value)


def test_truncated_xyz_line(tmp_path):
    (tmp_path / "c.xyz").write_text("1 2 3\n4 5 6\n7 8")  # Open3D aborts the process on this
    with pytest.raises(FileFormatError, match="c.xyz"):
        read_point_cloud(tmp_path / "c.xyz")
    (tmp_path / "d.xyz").write_text("1 2 3 4\n5 6 7 8\n")
    with pytest.raises(FileFormatError, match="rows of 3"):
        read_point_cloud(tmp_path / "d.xyz")
    (tmp_path / "e.xyz").write_text("# only a comment\n")
    with pytest.raises(FileFormatError, match="rows of 3"):
        read_point_cloud(tmp_path / "e.xyz")


def test_header_promising_more_than_the_file_holds(tmp_path):
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 99999999999\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    (tmp_path / "h.ply").write_bytes(header + bytes(120))
    with pytest.raises(FileFormatError, match="truncated"):
        read_point_cloud(tmp_path / "h.ply")
    (tmp_path / "n.ply").write_bytes(header.replace(b"property float z\n", b""))
    with pytest.raises(FileFormatError, match="x, y, z"):
        read_point_cloud(tmp_path / "n.ply")
    (tmp_path / "m.ply").write_bytes(header.replace(b"format binary_little_endian 1.0\n", b""))
    with pytest.raises(FileFormatError, match="format"):
        read_point_cloud(tmp_path / "m.ply")


def test_wrong_extension(tmp_path):
    _o3d_write(tmp_path / "real.ply")
    shutil.copy(tmp_path / "real.ply", tmp_path / "named.pcd")
    with pytest.raises(FileFormatError, match="PCD"):
        read_point_cloud(tmp_path / "named.pcd")
    shutil.copy(tmp_path / "real.ply", tmp_path / "named.xyz")
    with pytest.raises(FileFormatError, match="named.xyz"):
        read_point_cloud(tmp_path / "named.xyz")
    write_point_cloud(_cloud(names=("intensity",)), tmp_path / "scan.bin")
    with pytest.raises(FileFormatError, match="not a PLY file"):
        read_point_cloud(tmp_path / "scan.bin", format="ply")
    with pytest.raises(FileFormatError, match="cannot infer"):
        read_point_cloud(tmp_path / "scan.label")


def test_non_finite_values_in_files(tmp_path):
    records = np.zeros((4, 4), dtype="<f4")
    records[2, 1] = np.nan
    records.tofile(tmp_path / "nan.bin")
    with pytest.raises(FileFormatError, match="NaN/Inf.*1 of 4"):
        read_point_cloud(tmp_path / "nan.bin")
    records[2, 1] = 3e20  # finite, but no sensor sees 3e20 m: garbage
    records.tofile(tmp_path / "far.bin")
    with pytest.raises(FileFormatError, match="farther"):
        read_point_cloud(tmp_path / "far.bin")
    six = np.zeros((3, 6), dtype="<f4")
    six[:, 3:] = 300  # colours beyond 255
    six.tofile(tmp_path / "scannet_bad.bin")
    with pytest.raises(FileFormatError, match="outside"):
        read_point_cloud(tmp_path / "scannet_bad.bin")
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    (tmp_path / "inf.ply").write_bytes(header + np.array([0, 0, 0, 1, 1, np.inf, 2, 2, 2], dtype="<f4").tobytes())
    with pytest.raises(FileFormatError, match="NaN/Inf"):
        read_point_cloud(tmp_path / "inf.ply")
    (tmp_path / "nan.xyz").write_text("1 2 nan\n")
    with pytest.raises(FileFormatError, match="NaN/Inf"):
        read_point_cloud(tmp_path / "nan.xyz")


# --------------------------------------------------------------------------- bad input: writing


@pytest.mark.parametrize("name", ["w.ply", "w.pcd", "w.xyz", "w.bin"])
@pytest.mark.parametrize(
    "data, match",
    [
        (Data(pos=torch.tensor([[0.0, float("nan"), 0.0]])), "NaN"),
        (Data(pos=torch.zeros(4, 2)), r"\[N, 3\]"),
        (Data(pos=torch.zeros(4, 3, dtype=torch.long)), "floating"),
        (Data(pos=torch.tensor([[1e39, 0.0, 0.0]], dtype=torch.float64)), "float32"),
        (Data(pos=torch.zeros(4, 3), x=torch.zeros(3, 1)), "3 rows"),
        (Data(pos=torch.zeros(4, 3), x=torch.zeros(4)), "x must have shape"),
        (Data(pos=torch.zeros(4, 3), x=torch.full((4, 1), float("inf"))), "NaN or Inf"),
        (Data(pos=torch.zeros(4, 3), x=torch.zeros(4, 2), x_names=["a"]), "1 names"),
        (Data(pos=torch.zeros(4, 3), x=torch.zeros(4, 2), x_names=["a", "a"]), "duplicate"),
        (Data(pos=torch.zeros(4, 3), x=torch.zeros(4, 1), x_names=["y"]), "valid attribute"),
        (Data(pos=torch.zeros(4, 3), x=torch.zeros(4, 1), x_names=["bad name"]), "valid attribute"),
        (Data(pos=torch.zeros(4, 3), x=torch.zeros(4, 1), x_names="red"), "list of str"),
        (Data(pos=torch.zeros(4, 3), x=torch.zeros(4, 2), x_names=["red", "green"]), "colors"),
        (Data(pos=torch.zeros(4, 3), x=torch.full((4, 3), 2.0), x_names=["red", "green", "blue"]), r"\[0, 1\]"),
        (Data(x=torch.zeros(4, 1)), "pos must be a torch.Tensor"),
    ],
)  # fmt: skip
def test_write_rejects_bad_data(tmp_path, name, data, match):
    with pytest.raises(InvalidInputError, match=match):
        write_point_cloud(data, tmp_path / name)
    assert os.listdir(tmp_path) == []  # nothing written, no temporary file left


def test_write_rejects_non_data_and_missing_folders(tmp_path):
    with pytest.raises(InvalidInputError, match="Data"):
        write_point_cloud(torch.zeros(4, 3), tmp_path / "a.ply")
    with pytest.raises(FileFormatError, match="does not exist"):
        write_point_cloud(_cloud(), tmp_path / "no/such/dir/a.ply")
    with pytest.raises(InvalidInputError, match="beyond"):
        write_point_cloud(Data(pos=torch.tensor([[2e5, 0.0, 0.0]])), tmp_path / "far.bin")


def test_semantickitti_write_validates_labels(tmp_path):
    data = _cloud(n=4, names=("intensity",))
    data.y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(InvalidInputError, match="data.y"):
        write_point_cloud(data, tmp_path / "000000.bin", format="semantickitti")
    data.y, data.instance = torch.tensor([10, 10, 40, 40]), torch.tensor([0, 1, -1, -1])
    with pytest.raises(InvalidInputError, match="instance id 0"):
        write_point_cloud(data, tmp_path / "000001.bin", format="semantickitti")
    assert os.listdir(tmp_path) == []  # labels are checked before the scan is written
