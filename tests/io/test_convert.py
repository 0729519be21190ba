"""Tests for geo3d.io.convert: Data <-> Open3D / trimesh."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
import torch
import trimesh
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.io import from_open3d, from_trimesh, to_open3d, to_trimesh


def _cloud(n: int = 40) -> Data:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(n, 1, generator=g), torch.randint(0, 256, (n, 3), generator=g) / 255.0,
                   torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1), torch.rand(n, 1, generator=g)], 1)  # fmt: skip
    names = ["intensity", "red", "green", "blue", "nx", "ny", "nz", "ring"]
    return Data(pos=torch.randn(n, 3, generator=g) * 10, x=x, x_names=names)


def _mesh() -> Data:
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    return Data(pos=torch.from_numpy(box.vertices.astype(np.float32)), face=torch.from_numpy(box.faces.T.copy()))


def test_tensor_point_cloud_round_trip_keeps_every_column():
    data = _cloud()
    cloud = to_open3d(data)
    assert isinstance(cloud, o3d.t.geometry.PointCloud)
    assert set(cloud.point) == {"positions", "intensity", "colors", "normals", "ring"}
    np.testing.assert_array_equal(cloud.point.colors.numpy(), data.x[:, 1:4].numpy())
    back = from_open3d(cloud)
    assert back.x_names == data.x_names
    assert torch.equal(back.pos, data.pos) and torch.equal(back.x, data.x)


def test_legacy_point_cloud_keeps_colours_and_normals():
    data = _cloud()
    cloud = to_open3d(data, legacy=True)
    assert isinstance(cloud, o3d.geometry.PointCloud)
    np.testing.assert_allclose(np.asarray(cloud.points), data.pos.numpy())
    np.testing.assert_allclose(np.asarray(cloud.normals), data.x[:, 4:7].numpy())
    back = from_open3d(cloud)
    assert back.x_names == ["red", "green", "blue", "nx", "ny", "nz"]
    assert torch.equal(back.pos, data.pos) and torch.equal(back.x, data.x[:, 1:7])


def test_legacy_point_cloud_from_open3d_built_independently():
    pts = np.random.default_rng(0).random((10, 3))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    data = from_open3d(cloud)
    assert data.pos.dtype == torch.float32 and data.x is None
    np.testing.assert_allclose(data.pos.numpy(), pts, rtol=1e-6)
    cloud.estimate_normals()
    assert from_open3d(cloud).x_names == ["nx", "ny", "nz"]


@pytest.mark.parametrize("legacy", [False, True])
def test_mesh_round_trip(legacy):
    mesh = _mesh()
    geometry = to_open3d(mesh, legacy=legacy)
    expected = o3d.geometry.TriangleMesh if legacy else o3d.t.geometry.TriangleMesh
    assert isinstance(geometry, expected)
    back = from_open3d(geometry)
    assert torch.equal(back.pos, mesh.pos) and torch.equal(back.face, mesh.face)
    if legacy:  # Open3D's own computation on the converted mesh: the box volume
        assert geometry.get_volume() == pytest.approx(6.0)


def test_open3d_mesh_with_vertex_colours():
    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=2.0)
    sphere.paint_uniform_color([0.2, 0.4, 0.6])
    data = from_open3d(sphere)
    assert data.face.shape == (3, len(sphere.triangles))
    assert data.x_names == ["red", "green", "blue"]
    torch.testing.assert_close(data.x[0], torch.tensor([0.2, 0.4, 0.6]))
    torch.testing.assert_close(data.pos.norm(dim=1), torch.full((len(data.pos),), 2.0))


def test_trimesh_round_trips():
    mesh = _mesh()
    tm = to_trimesh(mesh)
    assert isinstance(tm, trimesh.Trimesh) and tm.volume == pytest.approx(6.0)
    back = from_trimesh(tm)
    assert torch.equal(back.pos, mesh.pos) and torch.equal(back.face, mesh.face) and back.x is None
    data = _cloud()
    pc = to_trimesh(data)
    assert isinstance(pc, trimesh.PointCloud)
    back = from_trimesh(pc)
    assert back.x_names == ["red", "green", "blue"]
    assert torch.equal(back.pos, data.pos) and torch.equal(back.x, data.x[:, 1:4])  # 8-bit colours survive


def test_trimesh_vertex_colours():
    box = trimesh.creation.box()
    box.visual.vertex_colors = np.tile([255, 0, 51, 255], (len(box.vertices), 1))
    data = from_trimesh(box)
    assert torch.equal(data.x[0], torch.tensor([1.0, 0.0, 0.2]))
    assert torch.equal(data.pos, torch.from_numpy(box.vertices.astype(np.float32)))


def test_inputs_are_not_mutated():
    data = _cloud()
    pos, x = data.pos.clone(), data.x.clone()
    to_open3d(data)
    to_open3d(data, legacy=True)
    to_trimesh(data)
    assert torch.equal(data.pos, pos) and torch.equal(data.x, x)


@pytest.mark.parametrize("convert", [from_open3d, from_trimesh])
def test_from_rejects_other_types(convert):
    with pytest.raises(InvalidInputError, match="ndarray"):
        convert(np.zeros((3, 3)))


def test_from_rejects_bad_geometry():
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.array([[0.0, np.nan, 0.0]])))
    with pytest.raises(InvalidInputError, match="NaN"):
        from_open3d(cloud)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.zeros((3, 3))))
    cloud.colors = o3d.utility.Vector3dVector(np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="2 colors for 3 points"):
        from_open3d(cloud)
    bad = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.eye(3)), o3d.utility.Vector3iVector(np.array([[0, 1, 5]])))
    with pytest.raises(InvalidInputError, match="missing vertices"):
        from_open3d(bad)
    with pytest.raises(InvalidInputError, match="NaN"):
        from_trimesh(trimesh.PointCloud(np.array([[0.0, 0.0, np.inf]])))


@pytest.mark.parametrize("convert", [to_open3d, to_trimesh, lambda d: to_open3d(d, legacy=True)])
@pytest.mark.parametrize(
    "data, match",
    [
        (Data(pos=torch.tensor([[0.0, float("nan"), 0.0]])), "NaN"),
        (Data(pos=torch.zeros(3, 4)), r"\[N, 3\]"),
        (Data(pos=torch.eye(3), face=torch.tensor([[0], [1], [4]])), "3 vertices"),
        (Data(pos=torch.eye(3), face=torch.tensor([0, 1, 2])), r"\[3, T\]"),
        (Data(pos=torch.eye(3), x=torch.full((3, 3), 1.5), x_names=["red", "green", "blue"]), r"\[0, 1\]"),
        (Data(pos=torch.eye(3), x=torch.zeros(3, 1), x_names=["positions"]), "valid attribute"),
        (torch.eye(3), "Data"),
    ],
)  # fmt: skip
def test_to_rejects_bad_data(convert, data, match):
    with pytest.raises(InvalidInputError, match=match):
        convert(data)
