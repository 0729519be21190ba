"""Tests for geo3d.datasets.kitti on a tiny layout written in the real KITTI formats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from geo3d.datasets import KITTI_CLASSES, KittiDetection, kitti_label_boxes_to_lidar, read_kitti_calib, read_kitti_label
from geo3d.errors import FileFormatError, InvalidInputError

# A real KITTI object calibration (values of training sample 000000's recording day).
CALIB = """P0: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02 0.000000000000e+00 0.000000000000e+00 7.070493000000e+02 1.805066000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P1: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02 -3.797842000000e+02 0.000000000000e+00 7.070493000000e+02 1.805066000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P2: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02 4.575831000000e+01 0.000000000000e+00 7.070493000000e+02 1.805066000000e+02 -3.454157000000e-01 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 4.981016000000e-03
P3: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02 -3.341081000000e+02 0.000000000000e+00 7.070493000000e+02 1.805066000000e+02 2.330660000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 3.201153000000e-03
R0_rect: 9.999239000000e-01 9.837760000000e-03 -7.445048000000e-03 -9.869795000000e-03 9.999421000000e-01 -4.278459000000e-03 7.402527000000e-03 4.351614000000e-03 9.999631000000e-01
Tr_velo_to_cam: 7.533745000000e-03 -9.999714000000e-01 -6.166020000000e-04 -4.069766000000e-03 1.480249000000e-02 7.280733000000e-04 -9.998902000000e-01 -7.631618000000e-02 9.998621000000e-01 7.523790000000e-03 1.480755000000e-02 -2.717806000000e-01
Tr_imu_to_velo: 9.999976000000e-01 7.553071000000e-04 -2.035826000000e-03 -8.086759000000e-01 -7.854027000000e-04 9.998898000000e-01 -1.482298000000e-02 3.195559000000e-01 2.024406000000e-03 1.482454000000e-02 9.998881000000e-01 -7.997231000000e-01
"""

# type trunc occl alpha bbox(4) h w l x y z ry  (camera frame, bottom centre)
LABEL = """Car 0.88 3 -0.69 0.00 192.37 402.31 374.00 1.60 1.57 3.23 -2.70 1.74 3.68 -1.29
Car 0.00 1 2.04 334.85 178.94 624.50 372.04 1.57 1.50 3.68 -4.17 1.65 10.86 1.90
Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01
Van 0.00 0 -1.50 500.0 160.0 600.0 250.0 2.20 1.90 4.80 8.00 1.70 25.00 -1.57
Cyclist 0.00 0 1.00 600.0 150.0 650.0 300.0 1.72 0.60 1.80 4.00 1.60 14.00 -1.55 0.93
DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10
"""
KEPT = [0, 1, 2, 4]  # label rows kept with the default classes
LABELS = [0, 0, 1, 2]


def _label_rows(text: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split()[8:15]] for line in text.strip().splitlines()])


def _velo_to_rect(calib: dict) -> np.ndarray:
    r0, tr = np.eye(4), np.eye(4)
    r0[:3, :3], tr[:3, :4] = calib["R0_rect"], calib["Tr_velo_to_cam"]
    return r0 @ tr


def _points_in_camera_boxes(rows: np.ndarray, per_box: int, rng: np.random.Generator) -> np.ndarray:
    """Sample points inside KITTI label boxes with the devkit's camera-frame box model."""
    out = []
    for h, w, l, x, y, z, ry in rows:
        local = rng.uniform(-0.45, 0.45, (per_box, 3)) * [l, h, w] + [0, -h / 2, 0]  # y up to -h
        rot = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
        out.append(local @ rot.T + [x, y, z])
    return np.concatenate(out)


def _in_box(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Our own membership test of the geo3d box convention (centre, l, w, h, yaw)."""
    d = points - box[:3]
    c, s = math.cos(box[6]), math.sin(box[6])
    u, v = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]
    return (np.abs(u) <= box[3] / 2) & (np.abs(v) <= box[4] / 2) & (np.abs(d[:, 2]) <= box[5] / 2)


def _write_sample(folder: Path, sid: str, calib: str = CALIB, label: str | None = LABEL, seed: int = 0) -> np.ndarray:
    """Write velodyne/calib/label_2 files of one sample; return the box index of each point."""
    rng = np.random.default_rng(seed)
    for sub in ("velodyne", "calib") + (("label_2",) if label is not None else ()):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "calib" / f"{sid}.txt").write_text(calib)
    per_box = 60
    rows = _label_rows(LABEL)[KEPT]
    cam = _points_in_camera_boxes(rows, per_box, rng)
    homog = np.concatenate([cam, np.ones((len(cam), 1))], 1)
    velo = (homog @ np.linalg.inv(_velo_to_rect(read_kitti_calib(folder / "calib" / f"{sid}.txt"))).T)[:, :3]
    background = rng.uniform([30, -40, -2], [70, 40, 2], (100, 3))  # far from every box
    points = np.concatenate([velo, background])
    records = np.concatenate([points, rng.uniform(0, 1, (len(points), 1))], 1).astype("<f4")
    records.tofile(folder / "velodyne" / f"{sid}.bin")
    if label is not None:
        (folder / "label_2" / f"{sid}.txt").write_text(label)
    return np.concatenate([np.repeat(np.arange(len(rows)), per_box), np.full(len(background), -1)])


@pytest.fixture
def kitti_root(tmp_path):
    owners = {}
    for sid in ("000000", "000001", "000002"):
        owners[sid] = _write_sample(tmp_path / "training", sid, seed=int(sid))
    _write_sample(tmp_path / "testing", "000007", label=None)
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets/train.txt").write_text("000000\n000002\n")
    (tmp_path / "ImageSets/val.txt").write_text("000001\n")
    (tmp_path / "ImageSets/trainval.txt").write_text("000000\n000001\n000002\n\n")
    (tmp_path / "ImageSets/test.txt").write_text("000007\n")
    return tmp_path, owners


def test_points_sampled_in_camera_boxes_fall_in_the_converted_lidar_boxes(kitti_root):
    root, owners = kitti_root
    data = KittiDetection(root, "train")[0]
    assert data.sample_id == "000000"
    assert data.boxes.dtype == torch.float32 and data.boxes.shape == (4, 7)
    assert data.box_labels.dtype == torch.long and data.box_labels.tolist() == LABELS
    pos, boxes = data.pos.numpy().astype(np.float64), data.boxes.numpy().astype(np.float64)
    inside = np.stack([_in_box(pos, b) for b in boxes], 1)  # [N, K]
    owner = owners["000000"]
    for k in range(len(boxes)):
        assert inside[owner == k, k].all(), f"box {k} misses its points"
        assert not inside[owner != k, k].any(), f"box {k} holds other points"
    try:
        from geo3d.geometry.boxes import points_in_boxes
    except ImportError:
        return
    np.testing.assert_array_equal(points_in_boxes(data.pos, data.boxes).numpy(), owner)


def test_axis_aligned_calibration_gives_exact_centre_and_yaw(tmp_path):
    calib = {"R0_rect": np.eye(3), "Tr_velo_to_cam": np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0.0]])}
    # (h, w, l, x, y, z, ry): camera (x right, y down, z forward) -> LiDAR (z fwd -> x, -x -> y, -y -> z)
    rows = np.array([[1.5, 1.6, 4.0, 1.0, 2.0, 10.0, -math.pi / 2]])
    box = kitti_label_boxes_to_lidar(rows, calib)[0]
    np.testing.assert_allclose(box, [10.0, -1.0, -2.0 + 0.75, 4.0, 1.6, 1.5, 0.0], atol=1e-12)


@pytest.mark.parametrize(
    "ry, yaw",
    [(-math.pi / 2, 0.0), (0.0, -math.pi / 2), (math.pi / 2, -math.pi), (math.pi, math.pi / 2), (-math.pi, math.pi / 2), (0.3, -0.3 - math.pi / 2)],
)  # fmt: skip
def test_yaw_conversion_and_wrapping(ry, yaw):
    calib = read_kitti_calib_from_text(CALIB)
    out = kitti_label_boxes_to_lidar(np.array([[1.5, 1.6, 4.0, 0.0, 1.0, 10.0, ry]]), calib)[0, 6]
    assert -math.pi <= out < math.pi
    assert out == pytest.approx(yaw, abs=1e-12)


def read_kitti_calib_from_text(text: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.txt"
        path.write_text(text)
        return read_kitti_calib(path)


def test_calib_shapes():
    calib = read_kitti_calib_from_text(CALIB)
    assert calib["P2"].shape == (3, 4) and calib["R0_rect"].shape == (3, 3)
    assert calib["Tr_velo_to_cam"][0, 1] == pytest.approx(-9.999714e-01)
    assert set(calib) == {"P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo"}


def test_splits(kitti_root):
    root, _ = kitti_root
    assert KittiDetection(root, "train").sample_ids == ["000000", "000002"]
    assert KittiDetection(root, "val").sample_ids == ["000001"]
    assert KittiDetection(root, "trainval").sample_ids == ["000000", "000001", "000002"]
    assert KittiDetection(root, "training").sample_ids == ["000000", "000001", "000002"]
    assert len(KittiDetection(root, "val")) == 1
    for split in ("test", "testing"):
        test = KittiDetection(root, split)
        assert test.sample_ids == ["000007"]
        item = test[0]
        assert "boxes" not in item and item.pos.shape == (340, 3) and item.x.shape == (340, 1)
        assert item.x_names == ["intensity"]
    assert "KittiDetection" in repr(test)


def test_classes_override_and_default_mapping(kitti_root):
    root, _ = kitti_root
    data = KittiDetection(root, "val", classes={"Car": 0, "Van": 0, "Cyclist": 1})[0]
    assert data.box_labels.tolist() == [0, 0, 0, 1]
    assert data.boxes[2, 3:6].tolist() == pytest.approx([4.8, 1.9, 2.2])  # the van: l, w, h
    names = ("car", "pedestrian", "cyclist")  # geo3d.sim.CLASSES[:3]
    assert {k.lower(): v for k, v in KITTI_CLASSES.items()} == {n: i for i, n in enumerate(names)}
    try:
        from geo3d.sim.classes import OBJECT_CLASSES
    except ImportError:
        return
    assert OBJECT_CLASSES == names


def test_empty_label_file_gives_no_boxes(tmp_path):
    _write_sample(tmp_path / "training", "000000", label="")
    data = KittiDetection(tmp_path, "training")[0]
    assert data.boxes.shape == (0, 7) and data.box_labels.shape == (0,)


# --------------------------------------------------------------------------- bad input


def test_bad_split_and_classes(kitti_root):
    root, _ = kitti_root
    with pytest.raises(InvalidInputError, match="split must be one of"):
        KittiDetection(root, "validation")
    with pytest.raises(InvalidInputError, match="classes"):
        KittiDetection(root, "train", classes={"Car": "car"})


def test_missing_layout_parts(tmp_path, kitti_root):
    root, _ = kitti_root
    with pytest.raises(FileFormatError, match="velodyne"):
        KittiDetection(tmp_path / "nowhere", "train")
    (root / "ImageSets/val.txt").unlink()
    with pytest.raises(FileFormatError, match="val.txt"):
        KittiDetection(root, "val")
    (root / "ImageSets/train.txt").write_text("000000\n../../etc\n")
    with pytest.raises(FileFormatError, match="bad sample id"):
        KittiDetection(root, "train")
    (root / "ImageSets/train.txt").write_text("000000\n000099\n")
    dataset = KittiDetection(root, "train")
    with pytest.raises(FileFormatError, match="000099.bin"):
        dataset[1]
    (root / "training/calib/000000.txt").unlink()
    with pytest.raises(FileFormatError, match="calib/000000.txt"):
        dataset[0]
    (root / "training/label_2/000001.txt").unlink()
    with pytest.raises(FileFormatError, match="label_2/000001.txt"):
        KittiDetection(root, "training")[1]


@pytest.mark.parametrize(
    "line, match",
    [
        ("Car 0.0 0 0.0 1 2 3 4 1.5 1.6 4.0 1.0 1.0", "line 2.*13 fields"),
        ("Car 0.0 0 0.0 1 2 3 4 1.5 1.6 four 1.0 1.0 10.0 0.0", "line 2"),
        ("Car 0.0 0 0.0 1 2 3 4 1.5 1.6 nan 1.0 1.0 10.0 0.0", "line 2.*NaN"),
        ("Car 0.0 0 0.0 1 2 3 4 1.5 0.0 4.0 1.0 1.0 10.0 0.0", "line 2.*positive"),
    ],
)
def test_malformed_label_lines(tmp_path, line, match):
    (tmp_path / "l.txt").write_text("Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01\n" + line + "\n")
    calib = read_kitti_calib_from_text(CALIB)
    with pytest.raises(FileFormatError, match=match) as err:
        read_kitti_label(tmp_path / "l.txt", calib)
    assert "l.txt" in str(err.value)


@pytest.mark.parametrize(
    "text, match",
    [
        (CALIB.replace("R0_rect", "R_rect"), "R0_rect"),
        (CALIB.replace("Tr_velo_to_cam: 7.533745000000e-03 ", "Tr_velo_to_cam: "), "Tr_velo_to_cam"),
        (CALIB.replace("P2:", "P2"), "line 3"),
        (CALIB.replace("9.999239000000e-01", "abc"), "line 5"),
        (CALIB.replace("9.999239000000e-01", "inf"), "line 5.*NaN"),
        ("", "empty"),
    ],
)
def test_bad_calibration_files(tmp_path, text, match):
    (tmp_path / "c.txt").write_text(text)
    with pytest.raises(FileFormatError, match=match):
        read_kitti_calib(tmp_path / "c.txt")


def test_binary_calibration_and_corrupt_scan(tmp_path, kitti_root):
    (tmp_path / "b.txt").write_bytes(bytes(range(256)))
    with pytest.raises(FileFormatError, match="not ASCII"):
        read_kitti_calib(tmp_path / "b.txt")
    root, _ = kitti_root
    scan = root / "training/velodyne/000001.bin"
    scan.write_bytes(scan.read_bytes()[:-6])
    with pytest.raises(FileFormatError, match="000001.bin.*record size 16"):
        KittiDetection(root, "val")[0]
