"""``geo3d detect``: JSON out, checkpoint errors, nuScenes frame conversion."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from geo3d.cli import main
from geo3d.cli import detect as detect_cli
from geo3d.geometry.boxes import points_in_boxes
from geo3d.models import create
from geo3d.tasks import save_checkpoint

KWARGS = dict(width=4, max_neighbors=4, x_range=(-12.8, 12.8), y_range=(-12.8, 12.8),
              score_threshold=0.0, max_detections=5)


def _scan(path, n=400, columns=4, seed=0):
    rng = np.random.default_rng(seed)
    rec = rng.uniform(-10, 10, (n, columns)).astype(np.float32)
    rec[:, 2] = rng.uniform(-1.8, 0.5, n)
    rec[:, 3] = rng.uniform(0, 1 if columns == 4 else 255, n)
    rec.tofile(path)
    return rec


def _checkpoint(path, name="pointnet2_det", kwargs=KWARGS):
    torch.manual_seed(0)
    model = create(name, **kwargs)
    save_checkpoint(path, {"model_name": name, "model_kwargs": kwargs,
                           "model": model.state_dict()})
    return path


def test_detect_writes_json(tmp_path, capsys):
    scan = tmp_path / "000001.bin"
    _scan(scan)
    ckpt = _checkpoint(tmp_path / "det.pt")
    out = tmp_path / "sub" / "detections.json"
    assert main(["detect", str(scan), "--out", str(out), "--checkpoint", str(ckpt)]) == 0
    payload = json.loads(out.read_text())
    dets = payload["detections"]
    assert 0 < len(dets) <= 5  # score threshold 0: the top peaks of an untrained model
    assert payload["box_format"] == ["x", "y", "z", "l", "w", "h", "yaw"]
    for d in dets:
        assert d["label"] in ("car", "pedestrian", "cyclist")
        assert 0 <= d["score"] <= 1 and set(d["box"]) == set(payload["box_format"])
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    assert "wrote" in capsys.readouterr().out


def test_detect_errors(tmp_path, capsys, monkeypatch):
    scan = tmp_path / "000001.bin"
    _scan(scan)
    monkeypatch.setattr(detect_cli, "_shipped", lambda: [])
    assert main(["detect", str(scan), "--out", str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err
    assert "no --checkpoint given and no pretrained detector is shipped" in err
    seg = tmp_path / "seg.pt"
    _checkpoint(seg, "pointnet2_seg", dict(num_classes=3, width=4))
    assert main(["detect", str(scan), "--out", str(tmp_path / "d.json"), "--checkpoint", str(seg)]) == 2
    assert "not a detection model" in capsys.readouterr().err
    ckpt = _checkpoint(tmp_path / "det.pt")
    assert main(["detect", str(tmp_path / "missing.bin"), "--out", str(tmp_path / "d.json"),
                 "--checkpoint", str(ckpt)]) == 2
    assert "missing.bin" in capsys.readouterr().err
    assert main(["detect", str(scan), "--out", str(tmp_path / "d.json"), "--checkpoint",
                 str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in capsys.readouterr().err
    assert not (tmp_path / "d.json").exists()


def test_nuscenes_frame_conversion_round_trip(tmp_path):
    path = tmp_path / "lidar_top.pcd.bin"
    rec = _scan(path, columns=5)
    scan = detect_cli.load_scan(path, in_channels=1)
    assert scan.conversion.startswith("nuScenes")
    # x right / y forward -> x forward / y left, and 0.11 m up
    torch.testing.assert_close(scan.pos[:, 0], torch.from_numpy(rec[:, 1]))
    torch.testing.assert_close(scan.pos[:, 1], torch.from_numpy(-rec[:, 0]))
    torch.testing.assert_close(scan.pos[:, 2], torch.from_numpy(rec[:, 2]) + 0.11)
    torch.testing.assert_close(scan.x[:, 0], torch.from_numpy(rec[:, 3]) / 255)
    # a box around some points in the detector frame holds the same points in the scan frame
    box = torch.tensor([[2.0, -1.0, -0.5, 6.0, 3.0, 2.5, 0.7]])
    inside_det = points_in_boxes(scan.pos, box) >= 0
    back = detect_cli.to_scan_frame(box, scan.conversion)
    inside_scan = points_in_boxes(torch.from_numpy(rec[:, :3]).float(), back) >= 0
    assert inside_det.sum() > 5 and torch.equal(inside_det, inside_scan)
    assert -math.pi <= float(back[0, 6]) < math.pi
    kitti = tmp_path / "000002.bin"
    _scan(kitti)
    assert detect_cli.load_scan(kitti, in_channels=0).conversion.startswith("none")
