"""SpinningLidar: beam pattern, range limits, noise, dropout, intensity, sensor frame."""

import numpy as np
import open3d as o3d
import pytest
import trimesh

from geo3d.errors import InvalidInputError
from geo3d.sim.lidar import SpinningLidar
from geo3d.sim.scene import Scene, SceneMesh

SMALL = dict(channels=16, azimuth_steps=256)


def _room(rho_front=0.5, rho_back=0.5, size=40.0):
    """A ground plane and four walls around the origin (every ray below +80 deg hits)."""
    half = size / 2
    parts = [(trimesh.creation.box(extents=(size, size, 0.1)), (0, 0, -2.05), 3, rho_front)]
    for x, rho in ((half, rho_front), (-half, rho_back)):
        parts.append((trimesh.creation.box(extents=(0.1, size, 30)), (x, 0, 0), 4, rho))
    for y in (half, -half):
        parts.append((trimesh.creation.box(extents=(size, 0.1, 30)), (0, y, 0), 5, 0.5))
    meshes = []
    for mesh, (x, y, z), label, rho in parts:
        pose = np.eye(4)
        pose[:3, 3] = (x, y, z)
        meshes.append(SceneMesh.from_trimesh(mesh, label, transform=pose, reflectivity=rho))
    return Scene(meshes)


def _ideal(**kwargs):
    return SpinningLidar(range_noise=0.0, dropout=0.0, intensity_noise=0.0, **kwargs)


def test_defaults_are_kitti_like():
    lidar = SpinningLidar()
    assert lidar.channels == 64 and 1600 <= lidar.azimuth_steps <= 2048
    assert 100_000 <= lidar.num_rays <= 131_072
    el = np.degrees(lidar.elevations())
    assert el[0] == pytest.approx(2.0) and el[-1] == pytest.approx(-24.8)
    assert lidar.mount_height == pytest.approx(1.73)


def test_ring_structure_and_full_coverage():
    lidar = _ideal(**SMALL)
    scan = lidar.scan(_room(), np.eye(4), np.random.default_rng(0))
    assert len(scan) == lidar.num_rays  # closed room: every ray returns
    el = np.arcsin(scan.points[:, 2] / np.linalg.norm(scan.points, axis=1))
    np.testing.assert_allclose(el, lidar.elevations()[scan.ring], atol=2e-5)
    assert np.unique(scan.ring).tolist() == list(range(16))
    assert np.array_equal(np.bincount(scan.column), np.full(256, 16))
    # Ring-major order, azimuth spinning clockwise from behind.
    order = scan.ring * lidar.azimuth_steps + scan.column
    assert np.all(np.diff(order) > 0)


def test_noise_free_points_lie_on_the_meshes():
    scene = _room()
    lidar = _ideal(**SMALL, azimuth_jitter=False)
    pose = np.eye(4)
    pose[:3, :3] = trimesh.transformations.rotation_matrix(0.7, (0, 0, 1))[:3, :3]
    pose[:3, 3] = (1.0, -2.0, 0.5)
    scan = lidar.scan(scene, pose, np.random.default_rng(0))
    world = scan.points @ pose[:3, :3].T + pose[:3, 3]
    # Independent of our Scene.cast: Open3D's distance query against the raw triangles.
    rc = o3d.t.geometry.RaycastingScene()
    for i in range(len(scene)):
        rc.add_triangles(o3d.core.Tensor(scene.world_vertices(i)),
                         o3d.core.Tensor(scene.meshes[i].faces.astype(np.uint32)))
    dist = rc.compute_distance(o3d.core.Tensor(world.astype(np.float32))).numpy()
    assert dist.max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(scan.points, axis=1), scan.range, rtol=1e-5)


def test_range_noise_has_the_configured_sigma():
    scene, pose = _room(), np.eye(4)
    clean = _ideal(**SMALL, azimuth_jitter=False).scan(scene, pose, np.random.default_rng(0))
    noisy = SpinningLidar(**SMALL, range_noise=0.05, dropout=0.0, azimuth_jitter=False).scan(
        scene, pose, np.random.default_rng(1))
    assert np.array_equal(clean.ring, noisy.ring) and np.array_equal(clean.column, noisy.column)
    err = noisy.range.astype(float) - clean.range
    assert abs(err.mean()) < 0.005 and err.std() == pytest.approx(0.05, rel=0.08)
    # Noise is along the beam: directions are unchanged.
    u = clean.points / clean.range[:, None]
    v = noisy.points / noisy.range[:, None]
    np.testing.assert_allclose(u, v, atol=1e-5)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_dropout_rate(dropout):
    lidar = SpinningLidar(**SMALL, dropout=dropout)
    scan = lidar.scan(_room(), np.eye(4), np.random.default_rng(0))
    assert len(scan) / lidar.num_rays == pytest.approx(1 - dropout, abs=0.02)


def test_range_limits():
    box = trimesh.creation.box(extents=(0.4, 0.4, 0.4))
    near = SceneMesh.from_trimesh(box, 0)  # around the sensor: hit at 0.2 m
    far = np.eye(4)
    far[:3, 3] = (150.0, 0, 0)
    scene = Scene([near, SceneMesh.from_trimesh(trimesh.creation.box(extents=(1, 300, 300)), 4,
                                                transform=far)])
    lidar = SpinningLidar(**SMALL, min_range=1.0, max_range=120.0, range_noise=0.05)
    scan = lidar.scan(scene, np.eye(4), np.random.default_rng(0))
    assert len(scan) == 0
    lidar = _ideal(**SMALL, min_range=0.1, max_range=200.0)
    scan = lidar.scan(scene, np.eye(4), np.random.default_rng(0))
    assert len(scan) == lidar.num_rays and scan.range.max() < 0.5  # the near box hides all
    r = SpinningLidar(**SMALL).scan(_room(), np.eye(4), np.random.default_rng(0)).range
    assert r.min() >= 1.0 and r.max() <= 120.0


def test_intensity_follows_reflectivity_incidence_and_range():
    lidar = _ideal(channels=8, fov_up=1.0, fov_down=-1.0, azimuth_steps=360,
                   incidence_exponent=1.0, range_falloff=0.0)
    scan = lidar.scan(_room(rho_front=0.8, rho_back=0.2), np.eye(4), np.random.default_rng(0))
    assert scan.intensity.min() >= 0 and scan.intensity.max() <= 1
    x, y = scan.points[:, 0], scan.points[:, 1]
    head_on = np.abs(y) < 0.05 * np.abs(x)
    front, back = head_on & (x > 0), head_on & (x < 0)
    cos = np.abs(x) / np.linalg.norm(scan.points, axis=1)
    np.testing.assert_allclose(scan.intensity[front], 0.8 * cos[front], rtol=1e-4)
    np.testing.assert_allclose(scan.intensity[back], 0.2 * cos[back], rtol=1e-4)
    far = _ideal(channels=8, fov_up=1.0, fov_down=-1.0, azimuth_steps=360,
                 incidence_exponent=1.0, range_falloff=0.01)
    dim = far.scan(_room(rho_front=0.8, rho_back=0.2), np.eye(4), np.random.default_rng(0))
    np.testing.assert_allclose(dim.intensity, scan.intensity * np.exp(-0.01 * scan.range),
                               rtol=1e-4)


def test_points_are_in_the_sensor_frame():
    lidar = _ideal(**SMALL)
    wall = np.eye(4)
    wall[:3, 3] = (10.0, 30.0, 0)  # a wall at world y = 30, in front of a sensor facing +y
    scene = Scene([SceneMesh.from_trimesh(trimesh.creation.box(extents=(8, 0.1, 8)), 4,
                                          transform=wall)])
    pose = np.eye(4)
    pose[:3, :3] = trimesh.transformations.rotation_matrix(np.pi / 2, (0, 0, 1))[:3, :3]
    pose[:3, 3] = (10.0, 0, 0)
    scan = lidar.scan(scene, pose, np.random.default_rng(0))
    assert len(scan) > 0
    np.testing.assert_allclose(scan.points[:, 0], 29.95, atol=1e-4)  # ahead along x
    assert np.abs(scan.points[:, 1]).max() <= 4.0 + 1e-4


def test_mount_raises_along_the_vehicle_up_axis():
    lidar = SpinningLidar()
    base = np.eye(4)
    base[:3, :3] = trimesh.transformations.rotation_matrix(0.1, (1, 0, 0))[:3, :3]
    pose = lidar.mount(base)
    np.testing.assert_allclose(pose[:3, 3], 1.73 * base[:3, 2])
    np.testing.assert_array_equal(pose[:3, :3], base[:3, :3])


def test_scan_is_deterministic_given_the_rng():
    lidar = SpinningLidar(**SMALL)
    a = lidar.scan(_room(), np.eye(4), np.random.default_rng(5))
    b = lidar.scan(_room(), np.eye(4), 5)
    assert np.array_equal(lidar.scan(_room(), np.eye(4)).points,
                          lidar.scan(_room(), np.eye(4), 0).points)  # None: seed 0
    c = lidar.scan(_room(), np.eye(4), np.random.default_rng(6))
    assert np.array_equal(a.points, b.points) and np.array_equal(a.intensity, b.intensity)
    assert not np.array_equal(a.points, c.points)


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=0), "channels"),
    (dict(channels=2.5), "channels"),
    (dict(azimuth_steps=-1), "azimuth_steps"),
    (dict(fov_up=-30.0), "fov_down"),
    (dict(fov_up=95.0), "fov_up"),
    (dict(min_range=5.0, max_range=2.0), "min_range"),
    (dict(max_range=float("inf")), "max_range"),
    (dict(range_noise=-0.01), "range_noise"),
    (dict(range_noise=float("nan")), "range_noise"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(intensity_noise=-1.0), "intensity_noise"),
    (dict(azimuth_jitter=1), "azimuth_jitter"),
])
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        SpinningLidar(**kwargs)


def test_bad_scan_arguments_are_rejected():
    lidar = SpinningLidar(**SMALL)
    with pytest.raises(InvalidInputError, match="pose"):
        lidar.scan(_room(), np.eye(3), np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="rigid"):
        lidar.scan(_room(), np.diag([1.0, 1, -1, 1]), np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="rng"):
        lidar.scan(_room(), np.eye(4), -1)
    with pytest.raises(InvalidInputError, match="scene"):
        lidar.scan([], np.eye(4), np.random.default_rng(0))
