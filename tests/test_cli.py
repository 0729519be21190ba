"""The geo3d command line: the demo writes what it says; bad input exits cleanly."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geo3d.cli import main
from geo3d.io import read_point_cloud
from geo3d.sim.classes import CLASSES

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def test_simulate_writes_ply_frames_summary_and_picture(tmp_path, capsys):
    out = tmp_path / "seq"
    assert main(["simulate", "--out", str(out), "--frames", "2", "--seed", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_frames"] == 2 and summary["classes"] == list(CLASSES)
    assert sorted(p.name for p in out.iterdir()) == ["bev_000.png", "frame_000.ply",
                                                     "frame_001.ply", "summary.json"]
    for entry in summary["frames"]:
        cloud = read_point_cloud(out / entry["file"])
        assert cloud.pos.shape[0] == entry["num_points"] > 10_000
        labels = cloud.x[:, cloud.x_names.index("label")].long()
        counts = torch.bincount(labels, minlength=len(CLASSES)).tolist()
        assert counts == [entry["points_per_class"][c] for c in CLASSES]
    ids0 = {b["track_id"] for b in summary["frames"][0]["boxes"]}
    ids1 = {b["track_id"] for b in summary["frames"][1]["boxes"]}
    assert ids0 and len(ids0 & ids1) >= len(ids0) // 2, "tracks persist between frames"
    assert summary["total_points"] == sum(f["num_points"] for f in summary["frames"])


def test_simulate_is_deterministic(tmp_path):
    for name in ("a", "b"):
        main(["simulate", "--out", str(tmp_path / name), "--frames", "1", "--quiet"])
    a = json.loads((tmp_path / "a" / "summary.json").read_text())["frames"]
    b = json.loads((tmp_path / "b" / "summary.json").read_text())["frames"]
    assert a == b


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path), "--frames", "0", "--quiet"]) == 2
    assert "frames must be an integer >= 1" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.bin")]) == 2
    assert "missing.bin" in capsys.readouterr().err
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 7)
    assert main(["info", str(tmp_path / "bad.bin")]) == 2
    assert "bad.bin" in capsys.readouterr().err


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real scans not present")
def test_info_on_a_real_scan(capsys):
    assert main(["info", str(REAL / "kitti_000008.bin")]) == 0
    assert "17238" in capsys.readouterr().out


def test_console_script_runs():
    exe = shutil.which("geo3d") or str(Path(sys.executable).with_name("geo3d"))
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "simulate" in result.stdout
