"""Tests for geo3d.io.mesh: round trips, independent readers, bad input."""

from __future__ import annotations

import os

import numpy as np
import open3d as o3d
import pytest
import torch
import trimesh
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import read_mesh, write_mesh

FORMATS = ["ply", "off", "obj", "stl"]


def _mesh(seed: int = 0, dtype=torch.float32) -> Data:
    """An icosphere with shuffled vertex order, scaled to odd sizes."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(sphere.vertices))
    inverse = np.argsort(perm)
    pos = (sphere.vertices[perm] * [3.7, 0.013, 250.0] + [1e3, -2.0, 0.0]).astype(np.float32)
    faces = inverse[sphere.faces]
    return Data(pos=torch.from_numpy(pos).to(dtype), face=torch.from_numpy(faces.T.copy()))


@pytest.mark.parametrize("fmt", ["ply", "off", "obj"])
def test_round_trip_keeps_vertex_order_and_faces(tmp_path, fmt):
    mesh = _mesh()
    write_mesh(mesh, tmp_path / f"m.{fmt}")
    back = read_mesh(tmp_path / f"m.{fmt}")
    assert back.pos.dtype == torch.float32 and back.face.dtype == torch.long
    assert torch.equal(back.face, mesh.face)
    if fmt == "ply":
        assert torch.equal(back.pos, mesh.pos)  # binary: exact
    else:
        torch.testing.assert_close(back.pos, mesh.pos, rtol=0, atol=1e-9)  # 12 decimals


def test_stl_round_trip_merges_corners_and_keeps_triangles_exactly(tmp_path):
    mesh = _mesh()
    write_mesh(mesh, tmp_path / "m.stl")
    assert (tmp_path / "m.stl").stat().st_size == 84 + 50 * mesh.face.shape[1]
    back = read_mesh(tmp_path / "m.stl")
    assert back.pos.shape == mesh.pos.shape  # 3T corners merged back to V vertices
    assert torch.equal(back.pos[back.face], mesh.pos[mesh.face])  # same triangles, same order
    first_use = torch.unique_consecutive(back.face.T.reshape(-1)).tolist()
    assert sorted(set(first_use), key=first_use.index) == list(range(len(back.pos)))


def test_float64_input_is_written_as_float32(tmp_path):
    mesh = _mesh(dtype=torch.float64)
    write_mesh(mesh, tmp_path / "m.ply")
    assert torch.equal(read_mesh(tmp_path / "m.ply").pos, mesh.pos.float())


@pytest.mark.parametrize("fmt", FORMATS)
def test_files_are_read_by_open3d_too(tmp_path, fmt):
    mesh = _mesh()
    write_mesh(mesh, tmp_path / f"m.{fmt}")
    other = o3d.io.read_triangle_mesh(str(tmp_path / f"m.{fmt}"))
    assert len(other.triangles) == mesh.face.shape[1]
    corners = np.asarray(other.vertices)[np.asarray(other.triangles)]
    np.testing.assert_allclose(corners, mesh.pos[mesh.face.T].numpy(), rtol=0, atol=1e-4)


def test_polygons_are_split_into_triangles(tmp_path):
    (tmp_path / "q.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    (tmp_path / "q.off").write_text("OFF\n# a comment\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    for name in ("q.obj", "q.off"):
        back = read_mesh(tmp_path / name)
        assert back.pos.shape == (4, 3) and back.face.shape == (3, 2)
        area = 0.5 * torch.linalg.cross(back.pos[back.face[1]] - back.pos[back.face[0]],
                                        back.pos[back.face[2]] - back.pos[back.face[0]]).norm(dim=1).sum()  # fmt: skip
        assert area.item() == pytest.approx(1.0)


def test_format_override_and_inference_errors(tmp_path):
    write_mesh(_mesh(), tmp_path / "mesh.data", format="ply")
    assert read_mesh(tmp_path / "mesh.data", format="PLY").face.shape[1] == 320
    with pytest.raises(FileFormatError, match="ply, off, obj, stl"):
        read_mesh(tmp_path / "mesh.data")
    with pytest.raises(FileFormatError, match="ply, off, obj, stl"):
        read_mesh(tmp_path / "mesh.ply", format="glb")


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_empty_and_garbage_files(tmp_path, fmt):
    path = tmp_path / f"m.{fmt}"
    with pytest.raises(FileFormatError, match="does not exist"):
        read_mesh(path)
    path.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        read_mesh(path)
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    with pytest.raises(FileFormatError) as err:
        read_mesh(path)
    assert str(path) in str(err.value)
    path.write_text("hello world\nthis is not a mesh\n")
    with pytest.raises(FileFormatError, match=f"m.{fmt}"):
        read_mesh(path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("keep", [0.25, 0.6, 0.97])
def test_truncated_files(tmp_path, fmt, keep):
    path = tmp_path / f"m.{fmt}"
    write_mesh(_mesh(), path)
    data = path.read_bytes()
    cut = int(len(data) * keep)
    if fmt == "obj":  # OBJ has no counts: cut inside a line, as an interrupted write does
        cut = data.index(b"\n", cut) - 2
    path.write_bytes(data[:cut])
    with pytest.raises(FileFormatError) as err:
        read_mesh(path)
    assert str(path) in str(err.value)


def test_truncated_ascii_stl(tmp_path):
    text = trimesh.exchange.stl.export_stl_ascii(trimesh.creation.box())
    (tmp_path / "a.stl").write_text(text)
    assert read_mesh(tmp_path / "a.stl").pos.shape == (8, 3)  # corners merged
    (tmp_path / "b.stl").write_text(text[: len(text) // 2])
    with pytest.raises(FileFormatError, match="endsolid"):
        read_mesh(tmp_path / "b.stl")


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("f.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "outside|index"),
        ("f.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "index|bounds|vertices"),
        ("n.obj", "v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN"),
        ("p.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no triangles"),
        ("c.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n", "truncated"),
        ("k.off", "OFF\nfour two\n", "counts"),
    ],
)
def test_corrupt_text_meshes(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(FileFormatError, match=match):
        read_mesh(tmp_path / name)


def test_ply_faces_out_of_range_and_point_cloud_ply(tmp_path):
    header = (
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
    )
    (tmp_path / "bad.ply").write_text(header + "3 0 1 5\n")
    with pytest.raises(FileFormatError, match="bad.ply"):
        read_mesh(tmp_path / "bad.ply")
    o3d.t.io.write_point_cloud(str(tmp_path / "cloud.ply"), o3d.t.geometry.PointCloud(np.eye(3, dtype=np.float32)))
    with pytest.raises(FileFormatError, match="no triangles"):
        read_mesh(tmp_path / "cloud.ply")


# --------------------------------------------------------------------------- bad data


@pytest.mark.parametrize(
    "data, match",
    [
        (Data(pos=torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, float("nan"), 0]]), face=torch.tensor([[0], [1], [2]])), "NaN"),
        (Data(pos=torch.eye(3), face=torch.tensor([[0, 1, 2]])), r"\[3, T\]"),
        (Data(pos=torch.eye(3), face=torch.tensor([[0.0], [1.0], [2.0]])), "integer"),
        (Data(pos=torch.eye(3), face=torch.tensor([[0], [1], [3]])), "3 vertices"),
        (Data(pos=torch.eye(3), face=torch.tensor([[0], [-1], [2]])), "3 vertices"),
        (Data(pos=torch.eye(3), face=torch.zeros(3, 0, dtype=torch.long)), "at least one triangle"),
        (Data(pos=torch.eye(3)), "face"),
        (Data(pos=torch.zeros(0, 3), face=torch.tensor([[0], [1], [2]])), "empty"),
        (Data(pos=torch.eye(3)[:, :2], face=torch.tensor([[0], [1], [2]])), r"\[N, 3\]"),
        (Data(pos=torch.tensor([[1e39, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64), face=torch.tensor([[0], [1], [2]])), "float32"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("fmt", ["ply", "stl"])
def test_write_rejects_bad_data(tmp_path, data, match, fmt):
    with pytest.raises(InvalidInputError, match=match):
        write_mesh(data, tmp_path / f"m.{fmt}")
    assert os.listdir(tmp_path) == []


def test_write_rejects_non_data_and_bad_paths(tmp_path):
    with pytest.raises(InvalidInputError, match="Data"):
        write_mesh(trimesh.creation.box(), tmp_path / "m.ply")
    with pytest.raises(FileFormatError, match="does not exist"):
        write_mesh(_mesh(), tmp_path / "nowhere" / "m.ply")
    with pytest.raises(FileFormatError, match="extension"):
        write_mesh(_mesh(), tmp_path / "m.glb")


def test_off_with_header_merged_into_counts(tmp_path):
    """ModelNet40 ships files whose first line is 'OFF4 2 0'."""
    (tmp_path / "m.off").write_text("OFF4 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n")
    mesh = read_mesh(tmp_path / "m.off")
    assert mesh.pos.shape == (4, 3) and mesh.face.t().tolist() == [[0, 1, 2], [0, 1, 3]]
    (tmp_path / "bad.off").write_text("OFFX4 2 0\n0 0 0\n")
    with pytest.raises(FileFormatError, match="not an OFF file"):
        read_mesh(tmp_path / "bad.off")
