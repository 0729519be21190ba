"""KITTI tracking loader on tiny files in the real layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geo3d.datasets import KittiTracking, kitti_label_boxes_to_lidar, read_kitti_calib
from geo3d.datasets.kitti_tracking import read_kitti_tracking_calib, read_kitti_tracking_labels
from geo3d.errors import FileFormatError, InvalidInputError

# Sequence 0000's calibration as KITTI ships it (R_rect / Tr_velo_cam without a colon).
CALIB = """P0: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
P1: 7.215377e+02 0.000000e+00 6.095593e+02 -3.875744e+02 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
P2: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
P3: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03
R_rect 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
Tr_velo_cam 7.533745e-03 -9.999714e-01 -6.166020e-04 -4.069766e-03 1.480249e-02 7.280733e-04 -9.998902e-01 -7.631618e-02 9.998621e-01 7.523790e-03 1.480755e-02 -2.717806e-01
Tr_imu_velo 9.999976e-01 7.553071e-04 -2.035826e-03 -8.086759e-01 -7.854027e-04 9.998898e-01 -1.482298e-02 3.195559e-01 2.024406e-03 1.482454e-02 9.998881e-01 -7.997231e-01
"""
LABELS = """0 -1 DontCare -1 -1 -10.000000 219.310000 188.490000 245.500000 218.560000 -1000.000000 -1000.000000 -1000.000000 -10.000000 -1.000000 -1.000000 -1.000000
0 0 Van 0 0 -1.793451 296.744956 161.752147 455.226042 292.372804 2.000000 1.823255 4.433886 -4.552284 1.858523 13.410495 -2.115488
0 1 Cyclist 0 0 -1.936993 737.619499 161.531951 931.112229 374.000000 1.739063 0.824591 1.785241 1.640400 1.675660 5.776261 -1.675458
0 2 Pedestrian 0 0 -2.523309 1106.137292 166.576807 1204.470628 323.876144 1.714062 0.767881 0.972283 6.301919 1.652419 8.455685 -1.900245
2 1 Cyclist 1 0 -2.035367 745.017137 156.393157 938.839722 374.000000 1.739063 0.824591 1.785241 1.700388 1.640419 5.778596 -1.664456
"""
OBJECT_LINE = "Cyclist 0 0 -1.936993 737.619499 161.531951 931.112229 374.000000 1.739063 0.824591 1.785241 1.640400 1.675660 5.776261 -1.675458"


def _layout(root, frames=3, seq="0000"):
    velo = root / "training" / "velodyne" / seq
    velo.mkdir(parents=True)
    for f in range(frames):
        np.arange(4 * (5 + f), dtype=np.float32).tofile(velo / f"{f:06d}.bin")
    for name, text in (("calib", CALIB), ("label_02", LABELS)):
        (root / "training" / name).mkdir(parents=True, exist_ok=True)
        (root / "training" / name / f"{seq}.txt").write_text(text)
    return root


def test_calib_names_and_values(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(CALIB)
    calib = read_kitti_tracking_calib(path)
    assert calib["R0_rect"].shape == (3, 3) and calib["Tr_velo_to_cam"].shape == (3, 4)
    assert calib["P2"].shape == (3, 4) and calib["Tr_imu_to_velo"][0, 3] == pytest.approx(-0.8086759)
    # The same numbers in the object-detection format parse to the same matrices.
    obj = tmp_path / "obj.txt"
    obj.write_text(CALIB.replace("R_rect", "R0_rect:").replace("Tr_velo_cam", "Tr_velo_to_cam:")
                   .replace("Tr_imu_velo", "Tr_imu_to_velo:"))
    ref = read_kitti_calib(obj)
    for key in ("R0_rect", "Tr_velo_to_cam", "P2"):
        np.testing.assert_array_equal(calib[key], ref[key])


def test_sequence_frames_boxes_and_ids(tmp_path):
    ds = KittiTracking(_layout(tmp_path))
    assert len(ds) == 1 and ds.sequences == ["0000"]
    frames = ds[0]
    assert [f.frame for f in frames] == [0, 1, 2] and frames[1].pos.shape == (6, 3)
    f0 = frames[0]
    assert f0.track_id.tolist() == [1, 2] and f0.box_labels.tolist() == [2, 1]  # Van, DontCare skipped
    assert f0.boxes.dtype == torch.float32 and f0.boxes.shape == (2, 7)
    assert frames[1].boxes.shape == (0, 7) and frames[2].track_id.tolist() == [1]
    # Same conversion as the detection loader for the same label numbers.
    calib = read_kitti_tracking_calib(tmp_path / "training" / "calib" / "0000.txt")
    values = np.array([float(v) for v in OBJECT_LINE.split()[8:15]])
    torch.testing.assert_close(f0.boxes[0], torch.tensor(kitti_label_boxes_to_lidar(values[None], calib)[0],
                                                         dtype=torch.float32))
    # Independent check: camera (x, y, z) = (1.64, 1.68, 5.78) is ~5.8 m ahead, ~1.6 m right.
    x, y, z, l, w, h, yaw = f0.boxes[0].tolist()
    assert 5.5 < x < 6.5 and -2.0 < y < -1.3 and (l, w, h) == pytest.approx((1.785241, 0.824591, 1.739063))
    assert yaw == pytest.approx(1.675458 - np.pi / 2, abs=1e-5)
    with_van = KittiTracking(tmp_path, classes={"Car": 0, "Van": 0})
    assert with_van[0][0].track_id.tolist() == [0]


def test_bad_layout_and_files(tmp_path):
    with pytest.raises(FileFormatError, match="velodyne"):
        KittiTracking(tmp_path)
    root = _layout(tmp_path)
    with pytest.raises(InvalidInputError, match="split"):
        KittiTracking(root, split="val")
    with pytest.raises(FileFormatError, match="0007"):
        KittiTracking(root, sequences=["0007"])
    label = root / "training" / "label_02" / "0000.txt"
    label.write_text(LABELS + "3 4 Car 0 0 0 0 0 0 0 1 1\n")
    with pytest.raises(FileFormatError, match="line 6"):
        KittiTracking(root)[0]
    label.write_text(LABELS.splitlines()[2] + "\n" + LABELS.splitlines()[2] + "\n")
    with pytest.raises(FileFormatError, match="twice"):
        KittiTracking(root)[0]
    label.write_text(LABELS)
    (root / "training" / "calib" / "0000.txt").write_text("P0: 1 2 3\n")
    with pytest.raises(FileFormatError, match="R0_rect"):
        KittiTracking(root)[0]
    (root / "training" / "calib" / "0000.txt").write_text("R_rect 1 x\n")
    with pytest.raises(FileFormatError, match="line 1"):
        read_kitti_tracking_calib(root / "training" / "calib" / "0000.txt")
    with pytest.raises(FileFormatError, match="does not exist"):
        read_kitti_tracking_labels(tmp_path / "missing.txt", {})


def _oxts_line(lat=49.0, lon=8.4, alt=110.0, roll=0.0, pitch=0.0, yaw=0.0):
    rest = " ".join(["0.1"] * 19 + ["4", "10", "4", "4", "6"])  # velocities ... modes
    return f"{lat:.10f} {lon:.10f} {alt:.4f} {roll} {pitch} {yaw} {rest}"


def test_oxts_poses_follow_the_mercator_convention(tmp_path):
    from geo3d.datasets.kitti_tracking import read_kitti_oxts_poses

    metres_per_degree = 6378137.0 * np.pi / 180
    path = tmp_path / "0000.txt"
    path.write_text("\n".join([_oxts_line(), _oxts_line(lat=49.0 + 1e-4, yaw=np.pi / 2),
                               _oxts_line(lon=8.4 + 1e-4, alt=111.0)]) + "\n")
    poses = read_kitti_oxts_poses(path)
    assert poses.shape == (3, 4, 4)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-9)
    np.testing.assert_allclose(poses[1][:3, 3], [0.0, 1e-4 * metres_per_degree, 0.0], atol=1e-3)
    np.testing.assert_allclose(poses[1][:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-9)
    east = 1e-4 * metres_per_degree * np.cos(np.deg2rad(49.0))
    np.testing.assert_allclose(poses[2][:3, 3], [east, 0.0, 1.0], atol=1e-3)


def test_lidar_poses_turn_with_the_imu_to_velo_calibration(tmp_path):
    from geo3d.datasets.kitti_tracking import read_kitti_oxts_poses

    path = tmp_path / "0000.txt"
    path.write_text(_oxts_line() + "\n" + _oxts_line(lon=8.4 + 1e-4) + "\n")
    imu_to_velo = np.array([[0.0, -1, 0, 0.5], [1, 0, 0, -0.3], [0, 0, 1, 0.8]])  # Rz(90 deg)
    lidar = read_kitti_oxts_poses(path, imu_to_velo)
    moved = read_kitti_oxts_poses(path)[1][0, 3]  # metres east = along the IMU's x
    np.testing.assert_allclose(lidar[0], np.eye(4), atol=1e-9)
    # The IMU's x axis is the LiDAR's y axis: the LiDAR moves along its own +y.
    np.testing.assert_allclose(lidar[1][:3, 3], [0.0, moved, 0.0], atol=1e-6)


def test_sequence_frames_carry_ego_poses_from_oxts(tmp_path):
    root = _layout(tmp_path)
    oxts = root / "training" / "oxts"
    oxts.mkdir()
    (oxts / "0000.txt").write_text("\n".join(_oxts_line(lon=8.4 + 1e-5 * f) for f in range(3)))
    frames = KittiTracking(root)[0]
    assert all(f.ego_pose.shape == (1, 4, 4) and f.ego_pose.dtype == torch.float32 for f in frames)
    torch.testing.assert_close(frames[0].ego_pose[0], torch.eye(4))
    step = frames[1].ego_pose[0, :3, 3].norm()
    assert float(step) == pytest.approx(1e-5 * 6378137.0 * np.pi / 180 * np.cos(np.deg2rad(49)),
                                        rel=1e-3)
    (oxts / "0000.txt").write_text(_oxts_line() + "\n")
    with pytest.raises(FileFormatError, match="no pose for frame 1"):
        KittiTracking(root)[0]
    (oxts / "0000.txt").write_text("49.0 8.4 nan\n")
    with pytest.raises(FileFormatError, match="line 1 is malformed"):
        KittiTracking(root)[0]
