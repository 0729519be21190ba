"""Every benchmark script takes ``--device`` (and refuses CUDA where torch sees none), and
benchmarks/_pictures.py puts panels side by side, writes PNG / GIF, and never raises."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
import _measure  # noqa: E402
import _pictures  # noqa: E402

SCRIPTS = ("neighbors", "simulator", "segmentation", "classification", "mesh", "detection",
           "tracking", "temporal", "hand_pose", "efficiency", "conditional")
NO_CUDA = "--device cuda: torch sees no CUDA GPU on this machine"
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")


def _script(name: str):
    """benchmarks/<name>.py imported under a private name (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_dev_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _exit(name: str, *argv: str, tmp_path: Path) -> int:
    with pytest.raises(SystemExit) as info:
        _script(name).main([*argv, "--out", str(tmp_path / name)])
    return info.value.code


def test_every_script_is_covered():
    found = {p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_")}
    assert found == set(SCRIPTS)


@no_gpu
@pytest.mark.parametrize("name", SCRIPTS)
def test_cuda_without_gpu_exits_2_before_any_work(name, tmp_path, capsys):
    assert _exit(name, "--device", "cuda", tmp_path=tmp_path) == 2
    err = capsys.readouterr().err
    assert NO_CUDA in err
    assert not (tmp_path / name).exists()  # nothing written: it stopped at the arguments


@no_gpu
def test_cuda_without_gpu_on_the_command_line():
    res = subprocess.run([sys.executable, str(BENCH / "classification.py"), "--device", "cuda:0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].endswith(
        "error: --device cuda:0: torch sees no CUDA GPU on this machine")


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_lists_device(name, capsys):
    with pytest.raises(SystemExit) as info:
        _script(name).main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--device" in out and "{cpu,cuda,cuda:N}" in out


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CPU", "mps"])
def test_malformed_device_is_an_argument_error(bad, tmp_path, capsys):
    assert _exit("tracking", "--device", bad, tmp_path=tmp_path) == 2
    assert f"invalid device {bad!r}" in capsys.readouterr().err


def _parser():
    import argparse

    ap = argparse.ArgumentParser(prog="x")
    _measure.add_device_arg(ap)
    return ap


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_resolve_device_accepts_the_forms(device, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 16)
    ap = _parser()
    assert _measure.resolve_device(ap, ap.parse_args(["--device", device])) == device
    assert _measure.resolve_device(ap, ap.parse_args([])) == "cpu"


def test_resolve_device_refuses_a_missing_index(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    ap = _parser()
    with pytest.raises(SystemExit):
        _measure.resolve_device(ap, ap.parse_args(["--device", "cuda:2"]))
    assert "torch sees only 2 CUDA GPU(s)" in capsys.readouterr().err


# --------------------------------------------------------------------------- pictures


def _image(h, w, value):
    return np.full((h, w, 3), value, np.uint8)


def test_side_by_side_sizes_gap_and_titles():
    a, b = _image(10, 20, 200), _image(14, 30, 100)
    out = _pictures.side_by_side([a, b], gap=3)
    assert out.shape == (14, 20 + 3 + 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:10, :20], a)
    np.testing.assert_array_equal(out[:, 23:], b)
    assert (out[10:, :20] != 200).all()  # the shorter one is padded below
    titled = _pictures.side_by_side([a, b], titles=["left", "right"], gap=3)
    assert titled.shape == (14 + 20, 53, 3)
    np.testing.assert_array_equal(titled[20:30, :20], a)
    assert np.unique(titled[:20, :20].reshape(-1, 3), axis=0).shape[0] > 1  # text drawn
    with pytest.raises(ValueError):
        _pictures.side_by_side([a], titles=["one", "two"])


def test_save_picture_png_and_gif_round_trip(tmp_path):
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    _pictures.save_picture(img, tmp_path / "a.png")
    np.testing.assert_array_equal(iio.imread(tmp_path / "a.png")[..., :3], img)
    frames = [_image(16, 16, v) for v in (0, 128, 255)]
    _pictures.save_picture(frames, tmp_path / "a.gif")
    back = iio.imread(tmp_path / "a.gif", index=None)
    assert back.shape[:3] == (3, 16, 16)
    assert [int(f[..., :3].mean()) for f in back] == [0, 128, 255]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.png"]  # no temp files


def test_picture_never_raises_and_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_pictures, "renderer_ok", lambda: None)

    def broken():
        raise RuntimeError("no Vulkan device\nmore")

    assert _pictures.picture(tmp_path, "x_prediction.png", broken) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x_prediction.png" in err and "no Vulkan device" in err
    assert not list(tmp_path.iterdir())
    assert _pictures.picture(tmp_path, "y.png", lambda: _image(8, 8, 1), enabled=False) is None
    assert _pictures.picture(tmp_path, "y.png", lambda: _image(8, 8, 1)) == "y.png"
    assert (tmp_path / "y.png").is_file()
    monkeypatch.setattr(_pictures, "renderer_ok", lambda: "the renderer does not start")
    assert _pictures.picture(tmp_path, "z.png", lambda: _image(8, 8, 1)) is None
    assert "the renderer does not start" in capsys.readouterr().err
    assert not (tmp_path / "z.png").exists()


def test_picture_is_stopped_at_its_time_limit(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.setattr(_pictures, "renderer_ok", lambda: None)

    def spins():
        torch.ones(8) @ torch.ones(8)  # torch still works in the forked child
        time.sleep(60)

    start = time.perf_counter()
    assert _pictures.picture(tmp_path, "slow.png", spins, timeout=1.5) is None
    assert time.perf_counter() - start < 20
    err = capsys.readouterr().err
    assert "slow.png" in err and "timed out after 1.5 s" in err
    assert not list(tmp_path.iterdir())

    def dies():
        import os

        os._exit(3)

    assert _pictures.picture(tmp_path, "dead.png", dies) is None
    assert "exit 3" in capsys.readouterr().err


def test_panel_renders_a_scene_with_title_and_legend():
    why = _pictures.renderer_ok()
    if why is not None:
        pytest.skip(f"no offscreen renderer here: {why}")
    from torch_geometric.data import Data

    from geo3d.viewers import points

    g = torch.Generator().manual_seed(0)
    data = Data(pos=torch.rand(300, 3, generator=g) * 20 - 10,
                y=torch.randint(0, 3, (300,), generator=g))
    image = _pictures.panel(points(data, "label", point_size=4.0), "a title", 120, 90,
                            camera=_pictures.bev_camera(12.0, 120, 90))
    assert image.shape == (90 + 20, 120, 3) and image.dtype == np.uint8
    body = image[20:].reshape(-1, 3)
    car = np.round(255 * np.array([0.39, 0.59, 0.96]))  # geo3d.sim.CLASS_COLORS[0]
    assert (np.abs(body.astype(int) - car).max(1) <= 2).any()  # car points are drawn
