"""``geo3d view``: pictures without a window, the window under Xvfb, clear errors."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from geo3d import models
from geo3d.cli import main
from geo3d.io import write_point_cloud
from geo3d.tasks import save_checkpoint
from geo3d.viewers import ViewSession
from geo3d.viewers.offscreen import BACKGROUND

KITTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "kitti_000008.bin"
ROOT = Path(__file__).resolve().parents[1]


def _cloud(tmp_path, n=600):
    g = torch.Generator().manual_seed(0)
    data = Data(pos=torch.rand(n, 3, generator=g) * 10 - 5,
                y=torch.randint(0, 8, (n,), generator=g))
    path = tmp_path / "cloud.ply"
    write_point_cloud(Data(pos=data.pos), path)
    return path


def _lit(path):
    img = np.asarray(o3d.io.read_image(str(path)))
    return (np.abs(img.astype(int) - np.round(np.asarray(BACKGROUND) * 255)) > 3).any(-1)


@pytest.mark.skipif(not KITTI.is_file(), reason="real KITTI scan not present")
def test_kitti_scan_to_png(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "kitti.png"
    assert main(["view", "../shared/data/real/kitti_000008.bin", "--out", str(out)]) == 0
    assert _lit(out).sum() > 2000
    assert "wrote" in capsys.readouterr().out


def test_checkpoint_predictions_are_drawn(tmp_path, capsys):
    torch.manual_seed(0)
    kwargs = {"in_channels": 0, "num_classes": 8}
    model = models.create("pointnet2_seg", **kwargs)
    ckpt = save_checkpoint(tmp_path / "m.pt", {"model": model.state_dict(),
                                               "model_name": "pointnet2_seg",
                                               "model_kwargs": kwargs, "metadata": {}})
    out = tmp_path / "pred.png"
    argv = ["view", str(_cloud(tmp_path)), "--checkpoint", str(ckpt), "--out", str(out),
            "--width", "320", "--height", "240", "--color-by", "prediction"]
    assert main(argv) == 0
    assert "ms" in capsys.readouterr().out and _lit(out).any()


def _error(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_input_gives_one_clear_line(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert "does not exist" in _error(["view", str(tmp_path / "nope.ply"), "--out", out], capsys)
    odd = tmp_path / "scan.xyzw"
    odd.write_text("1 2 3\n")
    assert "format" in _error(["view", str(odd), "--out", out], capsys)
    nan = tmp_path / "nan.ply"
    nan.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                   "property float z\nend_header\n0 0 0\nnan 1 2\n")
    assert "NaN" in _error(["view", str(nan), "--out", out], capsys)
    assert "--out" in _error(["view", str(_cloud(tmp_path)), "--out", str(tmp_path / "a.bmp")],
                             capsys)
    assert "color_by" in _error(["view", str(_cloud(tmp_path)), "--color-by", "x", "--out", out],
                                capsys)
    assert "either" in _error(["view", "--out", out], capsys)


def test_no_display_says_how_to_render_without_a_window(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("displays are only looked for on Linux")
    assert "--out" in _error(["view", str(_cloud(tmp_path))], capsys)


class _BudgetModel(nn.Module):
    """Segments by height; the budget scales its work (a stand-in for issue 7's models)."""

    task = "segmentation"
    in_channels = 0

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 8)
        self.budget = 1.0

    def set_budget(self, b):
        self.budget = b

    def forward(self, data):
        return self.lin(data.pos) * self.budget


def test_session_reruns_the_model_when_the_budget_changes():
    frame = Data(pos=torch.randn(50, 3))
    session = ViewSession([frame], model=_BudgetModel(), count_macs=False)
    assert session.has_budget
    first = session.prediction(0)
    session.budget = 0.5
    second = session.prediction(0)
    assert second is not first and session.model.budget == 0.5
    assert second.data.y.shape == (50,) and second.latency_ms > 0
    assert session.scene(0).groups == ("points",)


@pytest.fixture(scope="module")
def xvfb():
    exe = shutil.which("Xvfb") or ("/usr/bin/Xvfb" if os.path.exists("/usr/bin/Xvfb") else None)
    if exe is None:
        pytest.skip("Xvfb is not installed")
    display = f":{100 + os.getpid() % 400}"
    proc = subprocess.Popen([exe, display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    if proc.poll() is not None:
        pytest.skip("Xvfb did not start")
    yield display
    proc.terminate()
    proc.wait(10)


def test_app_opens_under_xvfb_takes_a_screenshot_and_exits(tmp_path, xvfb):
    shot = tmp_path / "shot.png"
    env = {**os.environ, "DISPLAY": xvfb}
    cmd = [sys.executable, "-m", "geo3d.cli", "view", str(_cloud(tmp_path)),
           "--screenshot", str(shot)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    img = np.asarray(o3d.io.read_image(str(shot)))
    assert img.ndim == 3 and img.shape[0] > 100
    assert _lit(shot).sum() > 50  # the points are there, not just the background
