"""Procedural assets: local-frame contract, variation, determinism, exact terrain height."""

import numpy as np
import open3d as o3d
import pytest

from geo3d.errors import InvalidInputError
from geo3d.sim.classes import CLASSES, OBJECT_CLASSES, class_index
from geo3d.sim.objects import OBJECT_BUILDERS
from geo3d.sim.structures import STRUCTURE_BUILDERS, STRUCTURE_CLASSES
from geo3d.sim.terrain import make_ground

BUILDERS = {**OBJECT_BUILDERS, **STRUCTURE_BUILDERS}


def test_classes_put_objects_first():
    assert OBJECT_CLASSES == ("car", "pedestrian", "cyclist")
    assert CLASSES[:3] == OBJECT_CLASSES and len(set(CLASSES)) == len(CLASSES)
    assert [class_index(n) for n in CLASSES] == list(range(len(CLASSES)))
    assert set(STRUCTURE_CLASSES.values()) <= set(CLASSES)
    with pytest.raises(InvalidInputError, match="truck"):
        class_index("truck")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_local_frame_and_determinism(name):
    build = BUILDERS[name]
    meshes = [build(np.random.default_rng(s)) for s in range(8)]
    for m in meshes:
        lo, hi = m.bounds
        assert np.allclose((lo[:2] + hi[:2]) / 2, 0, atol=1e-9)
        assert abs(lo[2]) < 1e-9 and hi[2] > 0.2
        assert np.isfinite(m.vertices).all()
        assert m.faces.min() >= 0 and m.faces.max() < len(m.vertices)
        assert len(m.faces) < 5000, "assets must stay cheap to ray-cast"
    again = build(np.random.default_rng(3))
    assert np.array_equal(again.vertices, meshes[3].vertices)
    sizes = np.array([m.extents for m in meshes])
    assert np.ptp(sizes, axis=0).max() > 0.05, "sizes must vary with the seed"


def test_object_sizes_are_plausible():
    rng = np.random.default_rng(0)
    ranges = {"car": ((3.4, 5.6), (1.5, 2.2), (1.3, 2.4)),
              "pedestrian": ((0.2, 1.0), (0.3, 0.8), (1.35, 2.0)),
              "cyclist": ((1.4, 2.0), (0.45, 0.8), (1.4, 2.0))}
    for name, (lr, wr, hr) in ranges.items():
        for _ in range(20):
            l, w, h = OBJECT_BUILDERS[name](rng).extents
            assert lr[0] <= l <= lr[1] and wr[0] <= w <= wr[1] and hr[0] <= h <= hr[1], (name, l, w, h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_terrain_height_matches_ray_cast_surface(dtype):
    rng = np.random.default_rng(1)
    terrain = make_ground(rng, extent=60.0, max_slope=0.08, roughness=0.2)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(terrain.mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(terrain.mesh.faces.astype(np.uint32)))
    xy = rng.uniform(-29.9, 29.9, size=(2000, 2)).astype(dtype)
    rays = np.concatenate([xy, np.full((2000, 1), 50.0), np.tile([0, 0, -1.0], (2000, 1))], 1)
    hit = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
    assert np.isfinite(hit).all()
    assert np.allclose(50.0 - hit, terrain.height(xy[:, 0], xy[:, 1]), atol=2e-4)
    assert abs(float(terrain.height(0.0, 0.0))) < 1e-12
    normals = terrain.mesh.face_normals
    assert (normals[:, 2] > 0.9).all(), "faces must point up and the slope stay gentle"


def test_terrain_roughness_and_bad_arguments():
    flat = make_ground(np.random.default_rng(0), extent=40.0, max_slope=0.0, roughness=0.0)
    assert np.allclose(flat.heights, 0.0)
    rough = make_ground(np.random.default_rng(0), extent=40.0, max_slope=0.0, roughness=0.3)
    assert 0.2 < rough.heights.std() < 0.4
    for kwargs in ({"extent": -1.0}, {"spacing": 0.0}, {"roughness": float("nan")},
                   {"max_slope": -0.1}, {"extent": 1e6, "spacing": 1.0}):
        with pytest.raises(InvalidInputError):
            make_ground(np.random.default_rng(0), **kwargs)
