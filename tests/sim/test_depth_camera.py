"""DepthCamera: pinhole intrinsics, z-depth, noise growing with depth squared, validity."""

import math

import numpy as np
import pytest
import trimesh

from geo3d.errors import InvalidInputError
from geo3d.sim.depth_camera import DepthCamera
from geo3d.sim.scene import Scene, SceneMesh


def _pose(t=(0.0, 0.0, 0.0), rot=None):
    p = np.eye(4)
    if rot is not None:
        p[:3, :3] = rot
    p[:3, 3] = t
    return p


def _wall(z, label=4, instance=-1, size=50.0):
    """A plane facing the camera at depth ``z`` (camera at the origin looking along +z)."""
    box = trimesh.creation.box(extents=(size, size, 0.01))
    return SceneMesh.from_trimesh(box, label, instance, _pose((0, 0, z + 0.005)))


def _ideal(**kwargs):
    return DepthCamera(depth_noise=0.0, **kwargs)


def test_defaults_and_intrinsics():
    cam = DepthCamera()
    assert (cam.width, cam.height) == (320, 240)
    assert (cam.cx, cam.cy) == (159.5, 119.5)
    fov = 2 * math.degrees(math.atan(cam.width / 2 / cam.fx))
    assert 55 < fov < 65
    np.testing.assert_array_equal(cam.intrinsics, [[cam.fx, 0, 159.5], [0, cam.fy, 119.5],
                                                   [0, 0, 1]])
    cam = DepthCamera.from_fov(640, 480, 90.0)
    assert cam.fx == pytest.approx(320.0) and cam.fy == pytest.approx(320.0)


def test_plane_gives_constant_z_depth_not_ray_length():
    cam = _ideal(width=64, height=48)
    frame = cam.render(Scene([_wall(2.0, label=4, instance=3)]), np.eye(4),
                       np.random.default_rng(0))
    np.testing.assert_allclose(frame.depth, 2.0, atol=1e-5)  # corners too: z, not range
    assert (frame.label == 4).all() and (frame.instance == 3).all()
    assert frame.points.shape == (64 * 48, 3) and frame.points.dtype == np.float32
    np.testing.assert_allclose(frame.points[:, 2], 2.0, atol=1e-5)
    # Camera frame: x right, y down; pixel (0, 0) is top-left, so x < 0 and y < 0 there.
    first = frame.points[0]
    assert frame.pixels[0].tolist() == [0, 0] and first[0] < 0 and first[1] < 0


def test_points_project_back_onto_the_depth_image():
    rng = np.random.default_rng(0)
    meshes = [_wall(6.0, label=4)]
    for i in range(5):
        box = trimesh.creation.box(extents=rng.uniform(0.3, 1.0, 3))
        rot = trimesh.transformations.random_rotation_matrix(rng.random(3))[:3, :3]
        meshes.append(SceneMesh.from_trimesh(box, 0, i, _pose(rng.uniform([-1, -1, 2],
                                                                         [1, 1, 4]), rot)))
    cam = DepthCamera(width=96, height=72, dropout=0.1)
    pose = _pose((0.3, -0.2, -0.5), trimesh.transformations.rotation_matrix(0.1, (0, 1, 0))[:3, :3])
    frame = cam.render(Scene(meshes), pose, np.random.default_rng(1))
    uvw = frame.points.astype(np.float64) @ cam.intrinsics.T
    uv = uvw[:, :2] / uvw[:, 2:]
    np.testing.assert_allclose(uv, frame.pixels, atol=1e-3)
    u, v = frame.pixels.T
    np.testing.assert_allclose(frame.depth[v, u], frame.points[:, 2], rtol=1e-6)
    valid = frame.depth > 0
    assert valid.sum() == len(frame.points) and (frame.label[~valid] == -1).all()
    np.testing.assert_array_equal(frame.label[v, u], frame.point_label)
    np.testing.assert_array_equal(frame.instance[v, u], frame.point_instance)
    assert set(np.unique(frame.point_instance)) <= {-1, 0, 1, 2, 3, 4}
    assert 0.85 < valid.mean() < 0.95  # 10% dropout


def test_depth_noise_grows_with_depth_squared():
    cam = DepthCamera(width=80, height=60, depth_noise=2e-3)
    err = []
    for z in (1.0, 3.0):
        frame = cam.render(Scene([_wall(z)]), np.eye(4), np.random.default_rng(0))
        err.append((frame.depth - z).std())
    assert err[0] == pytest.approx(2e-3, rel=0.1)
    assert err[1] / err[0] == pytest.approx(9.0, rel=0.15)


def test_pose_maps_camera_axes_to_the_world():
    # A camera at the world origin looking along world +x (camera z -> world x).
    rot = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # columns: camera x, y, z in world
    wall = SceneMesh.from_trimesh(trimesh.creation.box(extents=(0.01, 50, 50)), 4,
                                  transform=_pose((3.005, 0, 0)))
    frame = _ideal(width=32, height=24).render(Scene([wall]), _pose(rot=rot),
                                               np.random.default_rng(0))
    np.testing.assert_allclose(frame.depth, 3.0, atol=1e-5)


def test_range_and_grazing_pixels_are_invalid():
    scene = Scene([_wall(0.1)])
    frame = _ideal(width=16, height=12).render(scene, np.eye(4), np.random.default_rng(0))
    assert (frame.depth == 0).all() and len(frame.points) == 0 and (frame.label == -1).all()
    frame = _ideal(width=16, height=12).render(Scene([_wall(9.0)]), np.eye(4),
                                               np.random.default_rng(0))
    assert (frame.depth == 0).all()  # beyond max_depth = 8
    floor = SceneMesh.from_trimesh(trimesh.creation.box(extents=(200, 0.01, 200)), 3,
                                   transform=_pose((0, 1.0, 0)))  # y down: a floor below
    cam = DepthCamera.from_fov(32, 24, 90.0, depth_noise=0.0, min_incidence_cos=0.2)
    frame = cam.render(Scene([floor]), np.eye(4), np.random.default_rng(0))
    cos = frame.points[:, 1] / np.linalg.norm(frame.points, axis=1)  # floor normal: y
    assert len(cos) > 0 and cos.min() >= 0.2 - 1e-4
    cam = DepthCamera.from_fov(32, 24, 90.0, depth_noise=0.0, min_incidence_cos=0.0)
    assert len(cam.render(Scene([floor]), np.eye(4), np.random.default_rng(0)).points) > len(cos)


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=0), "width"),
    (dict(height=1.5), "height"),
    (dict(fx=0.0), "fx"),
    (dict(fy=-1.0), "fy"),
    (dict(cx=float("nan")), "cx"),
    (dict(min_depth=5.0, max_depth=1.0), "min_depth"),
    (dict(depth_noise=-1e-3), "depth_noise"),
    (dict(dropout=1.0), "dropout"),
    (dict(min_incidence_cos=1.0), "min_incidence_cos"),
])
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        DepthCamera(**kwargs)


def test_bad_render_arguments_are_rejected():
    cam = DepthCamera(width=8, height=6)
    with pytest.raises(InvalidInputError, match="pose"):
        cam.render(Scene([_wall(2.0)]), np.eye(3), np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="rng"):
        cam.render(Scene([_wall(2.0)]), np.eye(4), "bad")
    frame = cam.render(Scene([_wall(2.0)]), np.eye(4))  # rng defaults to the seed 0
    assert np.array_equal(frame.depth, cam.render(Scene([_wall(2.0)]), np.eye(4), 0).depth)
    with pytest.raises(InvalidInputError, match="fov_x"):
        DepthCamera.from_fov(fov_x=180.0)
