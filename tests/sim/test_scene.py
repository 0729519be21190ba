"""Scene: labelled meshes ray-cast with Open3D, checked against brute-force Moller-Trumbore."""

import numpy as np
import pytest
import trimesh

from geo3d.errors import InvalidInputError
from geo3d.sim.scene import Scene, SceneMesh


def _translation(x, y, z):
    t = np.eye(4)
    t[:3, 3] = (x, y, z)
    return t


def _box_scene():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    return Scene([
        SceneMesh.from_trimesh(box, label=3),
        SceneMesh.from_trimesh(box, label=0, instance=7, transform=_translation(3, 0, 0),
                               reflectivity=0.9),
    ])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cast_hits_distances_labels_and_misses(dtype):
    scene = _box_scene()
    origins = np.array([[0, 0, 5], [3, 0, 5], [10, 10, 5], [0, 0, 5]], dtype)
    dirs = np.array([[0, 0, -1], [0, 0, -2], [0, 0, -1], [0, 0, 1]], dtype)  # any length
    hits = scene.cast(origins, dirs)
    assert hits.ray.tolist() == [0, 1]  # the miss and the ray pointing away give nothing
    np.testing.assert_allclose(hits.distance, [4.5, 4.5], atol=1e-6)
    np.testing.assert_allclose(hits.point, [[0, 0, 0.5], [3, 0, 0.5]], atol=1e-6)
    np.testing.assert_allclose(np.abs(hits.normal[:, 2]), 1.0, atol=1e-6)
    np.testing.assert_allclose(hits.direction, [[0, 0, -1], [0, 0, -1]], atol=1e-7)
    assert hits.label.tolist() == [3, 0] and hits.instance.tolist() == [-1, 7]
    np.testing.assert_allclose(hits.reflectivity, [0.5, 0.9])
    assert hits.mesh.tolist() == [0, 1]
    assert scene.labels.tolist() == [3, 0] and scene.instances.tolist() == [-1, 7]


def _first_hits(origins, dirs, triangles):
    """Reference: brute-force Moller-Trumbore over all triangles ``[T, 3, 3]``."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    e1, e2 = b - a, c - a
    p = np.cross(dirs[:, None], e2[None])
    det = np.einsum("rtk,tk->rt", p, e1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        s = origins[:, None] - a[None]
        u = np.einsum("rtk,rtk->rt", s, p) * inv
        q = np.cross(s, e1[None])
        v = np.einsum("rk,rtk->rt", dirs, q) * inv
        t = np.einsum("rtk,tk->rt", q, e2) * inv
    ok = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    t = np.where(ok, t, np.inf)
    return t.min(1), t.argmin(1)


def test_cast_matches_brute_force_ray_tracing():
    rng = np.random.default_rng(0)
    meshes, parts = [], []
    for i in range(6):
        m = trimesh.creation.icosphere(subdivisions=1, radius=rng.uniform(0.5, 1.5)) if i % 2 \
            else trimesh.creation.box(extents=rng.uniform(0.5, 2.0, 3))
        pose = trimesh.transformations.random_rotation_matrix(rng.random(3))
        pose[:3, 3] = rng.uniform(-4, 4, 3)
        meshes.append(SceneMesh.from_trimesh(m, label=i, instance=i, transform=pose))
        parts.append(m.copy().apply_transform(pose))
    scene = Scene(meshes)
    origins = rng.uniform(-8, 8, (2000, 3))
    dirs = rng.normal(size=(2000, 3))
    hits = scene.cast(origins, dirs)
    merged = trimesh.util.concatenate(parts)
    owner = np.repeat(np.arange(len(parts)), [len(p.faces) for p in parts])
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    t, tri = _first_hits(origins, unit, merged.vertices[merged.faces])
    assert np.flatnonzero(np.isfinite(t)).tolist() == hits.ray.tolist()
    np.testing.assert_allclose(hits.distance, t[hits.ray], atol=1e-4)
    assert (hits.label == owner[tri[hits.ray]]).mean() > 0.999  # ties on shared edges


def test_moved_returns_new_scene_and_keeps_the_old():
    scene = _box_scene()
    moved = scene.moved({1: _translation(0, 3, 0)})
    o, d = np.array([[3.0, 0, 5], [0, 3, 5]]), np.array([[0, 0, -1.0], [0, 0, -1]])
    assert scene.cast(o, d).ray.tolist() == [0]
    assert moved.cast(o, d).ray.tolist() == [1]
    assert moved.world_vertices(0) is scene.world_vertices(0)  # untouched meshes shared
    np.testing.assert_allclose(moved.world_vertices(1).mean(0), [0, 3, 0], atol=1e-6)
    with pytest.raises(InvalidInputError, match="transforms key"):
        scene.moved({2: np.eye(4)})


def test_scene_mesh_copies_its_input():
    box = trimesh.creation.box()
    verts = np.array(box.vertices)
    mesh = SceneMesh(verts, np.array(box.faces), label=1)
    verts[:] = 100.0
    assert np.abs(mesh.vertices).max() == 0.5
    with pytest.raises(ValueError):
        mesh.vertices[0, 0] = 1.0  # read-only


def test_empty_scene_and_no_rays():
    assert len(Scene([]).cast(np.zeros(3), np.array([[1.0, 0, 0]]))) == 0
    assert len(_box_scene().cast(np.zeros((0, 3)), np.zeros((0, 3)))) == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(vertices=np.zeros((0, 3))), "vertices"),
    (dict(vertices=np.full((8, 3), np.nan)), "NaN"),
    (dict(faces=np.array([[0, 1, 9]])), "faces must index"),
    (dict(faces=np.zeros((1, 3), float)), "faces"),
    (dict(label=-1), "label"),
    (dict(label=1.5), "label"),
    (dict(instance=-2), "instance"),
    (dict(reflectivity=1.5), "reflectivity"),
    (dict(transform=np.diag([2.0, 1, 1, 1])), "rigid"),
    (dict(transform=np.eye(3)), "transform"),
])
def test_scene_mesh_rejects_bad_input(kwargs, match):
    box = trimesh.creation.box()
    args = dict(vertices=box.vertices, faces=box.faces, label=0)
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        SceneMesh(**args)


def test_cast_rejects_bad_rays():
    scene = _box_scene()
    with pytest.raises(InvalidInputError, match="directions"):
        scene.cast(np.zeros(3), np.zeros((4, 2)))
    with pytest.raises(InvalidInputError, match="non-zero"):
        scene.cast(np.zeros(3), np.zeros((4, 3)))
    with pytest.raises(InvalidInputError, match="origins"):
        scene.cast(np.zeros((2, 3)), np.ones((4, 3)))
    with pytest.raises(InvalidInputError, match="finite"):
        scene.cast(np.array([np.inf, 0, 0]), np.ones((4, 3)))
    with pytest.raises(InvalidInputError, match="SceneMesh"):
        Scene([trimesh.creation.box()])
