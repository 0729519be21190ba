"""MSRA hand layout, on tiny files written in that format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geo3d.datasets import MSRAHand
from geo3d.datasets.msra_hand import MSRA_TO_GEO3D, read_msra_depth, read_msra_joints
from geo3d.errors import FileFormatError, InvalidInputError

FX, CX, CY = 241.42, 160.0, 120.0


def _write_bin(path, box, left, top, width=320, height=240):
    h, w = box.shape
    header = np.array([width, height, left, top, left + w, top + h], "<i4").tobytes()
    path.write_bytes(header + box.astype("<f4").tobytes())


def _write_joints(path, joints):
    lines = [str(len(joints))] + [" ".join(f"{v:.4f}" for v in j.reshape(-1)) for j in joints]
    path.write_text("\n".join(lines) + "\n")


def _make(root, subject="P0", gesture="5", frames=2, seed=0):
    rng = np.random.default_rng(seed)
    g = root / subject / gesture
    g.mkdir(parents=True)
    boxes, joints = [], []
    for i in range(frames):
        box = rng.uniform(300, 500, (4, 5)).astype(np.float32)
        box[0, 0] = 0.0  # background pixel
        _write_bin(g / f"{i:06d}_depth.bin", box, left=100 + i, top=50)
        boxes.append(box)
        j = rng.uniform(-100, 100, (21, 3))
        j[:, 2] = -rng.uniform(300, 500, 21)  # MSRA: z negative
        joints.append(j)
    _write_joints(g / "joint.txt", np.array(joints))
    return boxes, np.array(joints)


def test_points_and_joints_in_camera_frame(tmp_path):
    boxes, joints = _make(tmp_path)
    ds = MSRAHand(tmp_path)
    assert len(ds) == 2
    d = ds[1]
    assert d.subject == "P0" and d.gesture == "5" and d.frame == 1
    assert d.pos.shape == (19, 3)  # 20 pixels, one without depth
    # independent back-projection of each pixel, loop by loop
    expected = []
    for r in range(4):
        for c in range(5):
            z = boxes[1][r, c]
            if z > 0:
                u, v = 101 + c, 50 + r
                expected.append([(u - CX) * z / FX / 1000, (v - CY) * z / FX / 1000, z / 1000])
    torch.testing.assert_close(d.pos.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-7)
    # joints: metres, y and z flipped (y down, z forward), thumb moved first
    j = joints[1]
    torch.testing.assert_close(d.joints[0].double(), torch.tensor(j[0] * [1, -1, -1] / 1000), atol=1e-6, rtol=0)
    torch.testing.assert_close(d.joints[1].double(), torch.tensor(j[17] * [1, -1, -1] / 1000), atol=1e-6, rtol=0)
    torch.testing.assert_close(d.joints[5].double(), torch.tensor(j[1] * [1, -1, -1] / 1000), atol=1e-6, rtol=0)
    assert (d.joints[:, 2] > 0).all()
    assert sorted(MSRA_TO_GEO3D) == list(range(21))


def test_projection_round_trip(tmp_path):
    """A joint put at a pixel's 3D point (MSRA convention) lands on that point."""
    g = tmp_path / "P3" / "TIP"
    g.mkdir(parents=True)
    box = np.full((3, 3), 400.0, np.float32)
    _write_bin(g / "000000_depth.bin", box, left=150, top=110)
    u, v, z = 151, 111, 400.0
    x, y = (u - CX) * z / FX, (v - CY) * z / FX
    j = np.zeros((1, 21, 3))
    j[0, :] = [x, -y, -z]  # MSRA: y up, z negative
    _write_joints(g / "joint.txt", j)
    d = MSRAHand(tmp_path)[0]
    dist = (d.pos - d.joints[0]).norm(dim=1)
    assert float(dist.min()) < 1e-6


def test_subject_and_gesture_selection(tmp_path):
    _make(tmp_path, "P0", "1")
    _make(tmp_path, "P1", "1", frames=3, seed=1)
    _make(tmp_path, "P1", "Y", frames=1, seed=2)
    assert len(MSRAHand(tmp_path)) == 6
    assert len(MSRAHand(tmp_path, subjects=["P1"])) == 4
    assert len(MSRAHand(tmp_path, gestures=["Y"], subjects=["P1"])) == 1
    with pytest.raises(FileFormatError, match="P7"):
        MSRAHand(tmp_path, subjects=["P7"])
    with pytest.raises(FileFormatError, match="Z"):
        MSRAHand(tmp_path, subjects=["P1"], gestures=["Z"])
    with pytest.raises(InvalidInputError, match="subjects"):
        MSRAHand(tmp_path, subjects="P1")


def test_bad_files(tmp_path):
    _make(tmp_path)
    g = tmp_path / "P0" / "5"
    raw = (g / "000000_depth.bin").read_bytes()
    (g / "000000_depth.bin").write_bytes(raw[:-4])
    with pytest.raises(FileFormatError, match="000000_depth.bin"):
        read_msra_depth(g / "000000_depth.bin")
    (g / "000000_depth.bin").write_bytes(raw[:10])
    with pytest.raises(FileFormatError, match="header"):
        MSRAHand(tmp_path)[0]
    bad = np.array([320, 240, 10, 10, 5, 20], "<i4").tobytes()  # right < left
    (g / "000001_depth.bin").write_bytes(bad)
    with pytest.raises(FileFormatError, match="bad header"):
        read_msra_depth(g / "000001_depth.bin")
    (g / "000001_depth.bin").unlink()
    with pytest.raises(FileFormatError, match="does not exist"):
        MSRAHand(tmp_path)[1]
    (g / "joint.txt").write_text("3\n" + " ".join(["1"] * 63) + "\n")
    with pytest.raises(FileFormatError, match="3 frames"):
        read_msra_joints(g / "joint.txt")
    (g / "joint.txt").write_text("1\n" + " ".join(["1"] * 62) + "\n")
    with pytest.raises(FileFormatError, match="line 2"):
        MSRAHand(tmp_path)
    with pytest.raises(FileFormatError, match="not a folder"):
        MSRAHand(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileFormatError, match="no MSRA frames"):
        MSRAHand(empty)
