"""The model benchmark scripts run, and benchmarks/_measure.py counts what it says.

The smoke tests also check each script's picture of its predictions
(``<name>_prediction.png|gif``, listed in the JSON's ``"pictures"``); see
tests/benchmarks/test_devices_and_pictures.py for ``--device`` and the picture helpers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
import _measure  # noqa: E402

SCRIPTS = ("segmentation.py", "classification.py")
TINY = ["--tiny", "--minutes", "0.01", "--train-size", "2", "--val-size", "1",
        "--test-size", "1", "--no-memory", "--repeats", "1"]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,  # slow when shared
                          check=False)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_runs(script):
    res = _run(script, "--help")
    assert res.returncode == 0, res.stderr
    for option in ("--quick", "--models", "--minutes", "--seed", "--out"):
        assert option in res.stdout


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))


@pytest.mark.parametrize("n", [1, 17, 1000])
def test_measure_mlp_params_and_macs(n):
    model = _mlp()
    out = _measure.measure(model, torch.randn(n, 3), repeats=2, memory=False)
    assert out["params"] == sum(p.numel() for p in model.parameters()) == 3 * 8 + 8 + 8 * 4 + 4
    assert out["macs"] == out["macs_dense"] == n * (3 * 8 + 8 * 4)
    assert out["gather_scatter"] == 0
    assert out["latency_ms"] > 0
    buf_size = out["size_bytes"]
    assert buf_size > 68 * 4  # the float32 weights at least
    assert model.training  # mode restored


def test_gather_scatter_counted_and_searches_excluded():
    from torch_geometric.utils import scatter

    from geo3d.geometry import knn_graph

    class Msg(nn.Module):  # one message-passing step over a kNN graph
        def forward(self, pos):
            edge_index = knn_graph(pos, 4)
            msg = pos[edge_index[0]] @ torch.ones(3, 5)  # gather E x 3, matmul E x 3 x 5
            return scatter(msg, edge_index[1], 0, dim_size=pos.shape[0], reduce="sum")

    pos = torch.rand(50, 3)
    e = 50 * 4
    out = _measure.count_macs(Msg(), pos)
    assert out["macs_dense"] == e * 3 * 5
    assert out["gather_scatter"] == e * 3 + e * 5


def test_peak_memory_sees_torch_allocations():
    n = 200_000
    mib = _measure.peak_memory_mib(_mlp().eval(), torch.randn(n, 3))
    # the forward holds at least one [n, 8] float32 activation: 6.1 MiB
    assert mib is not None and n * 8 * 4 / 2**20 * 0.9 <= mib < 200


def check_picture(out, result: dict, filename: str) -> np.ndarray:
    """The picture is listed in ``result["pictures"]``, reads back as a PNG / GIF with
    pixels, and is not a single colour; returns it (``[frames,] H, W, C``)."""
    import imageio.v3 as iio

    import _pictures

    why = _pictures.renderer_ok()
    if why is not None:
        pytest.skip(f"no offscreen renderer here: {why}")
    assert result["pictures"] == [filename]
    image = iio.imread(Path(out) / filename, index=None if filename.endswith(".gif") else 0)
    assert image.size > 0 and image.shape[-1] in (3, 4) and min(image.shape) > 0
    assert np.unique(image[..., :3].reshape(-1, 3), axis=0).shape[0] > 1
    return image


def _smoke(script, tmp_path, *extra, tiny=TINY):
    out = tmp_path / script.split(".")[0]
    res = _run(script, *tiny, "--out", str(out), *extra)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    stem = script.split(".")[0]
    assert (out / f"{stem}.md").is_file()
    result = json.loads((out / f"{stem}.json").read_text())
    assert result["device"] == "cpu"
    check_picture(out, result, f"{stem}_prediction.{'gif' if stem == 'tracking' else 'png'}")
    from geo3d.bench import load_rows

    assert load_rows(result, stem), f"{stem}: no suite rows"
    return result


COST_KEYS = {"params", "macs", "macs_dense", "gather_scatter", "latency_ms", "peak_memory_mib",
             "size_bytes"}


def test_segmentation_smoke(tmp_path):
    result = _smoke("segmentation.py", tmp_path, "--num-points", "128",
                    "--parts-num-points", "64")
    assert {"machine", "settings", "tasks", "target", "pyg_dynamic_edgeconv"} <= set(result)
    assert set(result["tasks"]) == {"lidar", "parts"}
    for task in result["tasks"].values():
        assert [r["model"] for r in task["rows"]] == ["dgcnn_seg", "pointnet2_seg", "equivariant_seg",
                                                       "voxel_unet_seg"]
        for r in task["rows"]:
            test = r["test"]["test"]
            assert {"mIoU", "OA", "iou"} <= set(test)
            assert set(test["iou"]) <= set(task["class_names"])
            assert COST_KEYS <= set(r["cost"])
            assert r["cost"]["macs"] > 0 and r["train"]["steps"] >= 1
    assert isinstance(result["target"]["met"], bool)
    assert result["settings"]["device"] == "cpu"
    assert all(r["train"]["device"] == "cpu" for t in result["tasks"].values() for r in t["rows"])
    try:
        import torch_cluster  # noqa: F401
    except ImportError:
        assert result["pyg_dynamic_edgeconv"]["status"] == "skipped: torch-cluster not installed"


def test_classification_smoke(tmp_path):
    result = _smoke("classification.py", tmp_path, "--num-points", "64")
    assert {"machine", "settings", "rows", "target"} <= set(result)
    assert [r["model"] for r in result["rows"]] == ["dgcnn_cls", "pointnet2_cls", "equivariant_cls"]
    for r in result["rows"]:
        assert {"aligned_acc", "rotated_acc", "drop_points"} <= set(r)
        assert r["drop_points"] == pytest.approx(100 * (r["aligned_acc"] - r["rotated_acc"]))
        assert COST_KEYS <= set(r["cost"])
    assert isinstance(result["target"]["met"], bool)


# Smoke tests of the other task scripts (slow: each trains and renders for a minute or more
# on 2 shared cores); each checks its JSON and its picture.


@pytest.mark.slow
def test_mesh_smoke(tmp_path):
    result = _smoke("mesh.py", tmp_path, tiny=["--tiny", "--minutes", "0.02", "--train-size", "2",
                                               "--test-size", "1", "--repeats", "1"])
    assert set(result["models"]) == {"gem_corr", "gcn"}
    assert result["models"]["gem_corr"]["train"]["device"] == "cpu"
    assert result["models"]["gem_corr"]["cost"]["peak_memory_mib"] > 0
    assert result["features"] == "hks" and result["models"]["gem_corr"]["kwargs"]["in_channels"] == 16
    from geo3d.tasks.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(tmp_path / "mesh" / "gem_corr.pt", task="segmentation")
    assert model.in_channels == 16


class _Predicts(nn.Module):
    """Logits that pick ``index[corr]`` for every vertex."""

    def __init__(self, index: np.ndarray) -> None:
        super().__init__()
        self.index = torch.as_tensor(index)

    def forward(self, data):
        return nn.functional.one_hot(self.index[data.corr], len(self.index)).float()


def test_correspondence_metrics_count_left_right_flips():
    import mesh

    from geo3d.datasets import SyntheticMeshes
    from geo3d.sim.humanoid import humanoid_template

    part = humanoid_template().part
    geodesic, mirror = mesh.geodesic_matrix(), mesh.mirror_map()
    data = [SyntheticMeshes("test", 1, features="none")[0]]
    truth = mesh.correspondence_metrics(_Predicts(np.arange(len(part))), data, geodesic, part,
                                        10, mirror=mirror)
    assert truth["exact"] == 1.0 and truth["mirror_flips"] == 0.0 and truth["part_mIoU"] == 1.0
    flipped = mesh.correspondence_metrics(_Predicts(mirror), data, geodesic, part, 10,
                                          mirror=mirror)
    far = geodesic[mirror, np.arange(len(part))] > 0.1  # off the body's middle
    assert 0.5 < far.mean() < 1
    assert flipped["mirror_flips"] == pytest.approx(far.mean())
    assert flipped["within_0.1m"] == pytest.approx(1 - far.mean())
    assert "mirror_flips" not in mesh.correspondence_metrics(_Predicts(mirror), data, geodesic,
                                                             part, 10)


@pytest.mark.slow
def test_detection_smoke(tmp_path):
    result = _smoke("detection.py", tmp_path, tiny=["--tiny", "--minutes", "0.02",
                                                    "--train-size", "2", "--test-size", "1",
                                                    "--no-memory", "--repeats", "1"])
    assert result["settings"]["device"] == "cpu" and result["rows"][0]["test"]["num_pred"] >= 0


@pytest.mark.slow
def test_tracking_smoke(tmp_path):
    result = _smoke("tracking.py", tmp_path, tiny=["--sequences", "1", "--length", "4",
                                                   "--recall-points", "5", "--dense-objects", "5",
                                                   "--metrics", "distance"])
    frames = check_picture(tmp_path / "tracking", result, "tracking_prediction.gif")
    assert frames.ndim == 4 and frames.shape[0] == 4 and frames.shape[1:3] == (240, 320)


@pytest.mark.slow
def test_temporal_smoke(tmp_path):
    result = _smoke("temporal.py", tmp_path, tiny=["--quick", "--minutes", "0.02", "--length", "2"])
    assert result["training"]["device"] == "cpu"


@pytest.mark.slow
def test_hand_pose_smoke(tmp_path):
    result = _smoke("hand_pose.py", tmp_path, "--configs", "none", "all", "--models",
                    "hand_pose_small", "--structural-scale", "2", "--epochs", "2", "--save-models")
    assert [r["config"] for r in result["runs"]] == ["none", "all"]
    assert result["structural_scale"] == 2.0
    # fixed epochs: each run trains exactly that many
    assert result["epochs"] == [2] and [r["train"]["epochs"] for r in result["runs"]] == [2, 2]
    # the bone term brings the eval-time refinement; the network's own joints are reported too
    none, full = result["runs"]
    assert none["test_network"] is None
    assert full["test_network"]["bone_length_error_mm"] != full["test"]["test"]["bone_length_error_mm"]
    md = (tmp_path / "hand_pose" / "hand_pose.md").read_text()
    assert "Without the eval-time refinements" in md and "2 epochs (fixed)" in md
    from geo3d.models import create
    from geo3d.models.hand_pose import HandPoseLossWeights

    assert full["kwargs"]["weights"]["bone"] == 2 * HandPoseLossWeights().bone
    # --save-models: the trained model, loadable into the same architecture
    state = torch.load(tmp_path / "hand_pose" / "hand_pose_small_all.pt")
    create("hand_pose_small", width=4).load_state_dict(state)


def test_hand_pose_ablation_weights():
    from geo3d.models.hand_pose import HandPoseLossWeights

    import hand_pose

    base = HandPoseLossWeights()
    one = hand_pose.weights_for("angle", 10.0)
    assert one.angle == 10 * base.angle and one.bone == 0 and one.inside == 0
    assert one.joints == base.joints and one.segmentation == base.segmentation
    assert hand_pose.weights_for("all") == base
    none = hand_pose.weights_for("none", 3.0)
    assert (none.bone, none.angle, none.inside) == (0, 0, 0)
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(SystemExit):
            hand_pose.main(["--structural-scale", bad, "--no-pictures"])
    for bad in (["0"], ["2", "2", "2"]):
        with pytest.raises(SystemExit):
            hand_pose.main(["--epochs", *bad, "--no-pictures"])


@pytest.mark.slow
def test_efficiency_smoke(tmp_path):
    result = _smoke("efficiency.py", tmp_path, "--num-points", "64", "--steps", "2",
                    "--finetune-minutes", "0.01", "--models", "dgcnn_seg",
                    "--variants", "magnitude50")
    assert [r["variant"] for r in result["rows"]] == ["dense", "magnitude50"]


def test_efficiency_runs_gem_on_meshes_with_field_pruning(tmp_path):
    """GEM-CNN needs meshes: the benchmark gives it SyntheticMeshes parts, and structured
    pruning removes rho-fields (a smaller model, no error row)."""
    result = _smoke("efficiency.py", tmp_path, "--finetune-minutes", "0.01", "--models",
                    "gem_seg", "--variants", "structured50_ft")
    dense, pruned = result["rows"]
    assert pruned["variant"] == "structured50_ft" and "error" not in pruned
    assert pruned["profile"]["params"] < dense["profile"]["params"]


def test_no_pictures_flag_writes_none(tmp_path):
    out = tmp_path / "classification"
    res = _run("classification.py", *TINY, "--num-points", "32", "--models", "dgcnn_cls",
               "--no-pictures", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "classification.json").read_text())["pictures"] == []
    assert not list(out.glob("*.png"))


def test_unknown_model_is_rejected():
    res = _run("classification.py", "--models", "nope_cls", "--out", "/nonexistent")
    assert res.returncode == 2 and "nope_cls" in res.stderr


# --------------------------------------------------------------------------- segmentation helpers

def _seg():
    import segmentation

    return segmentation


def _frame(n=500, seed=0):
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g) * torch.tensor([20.0, 20.0, 1.0])
    x = (torch.arange(n, dtype=torch.float32) / n)[:, None]  # intensity = point id / n
    return Data(pos=pos, x=x, y=torch.randint(0, 8, (n,), generator=g))


def test_random_subsets_draw_fresh_rotated_subsets_with_their_labels():
    seg = _seg()
    frame = _frame()
    ds = seg.RandomSubsets([frame], 100)
    torch.manual_seed(0)
    a, b = ds[0], ds[0]
    for d in (a, b):
        assert d.pos.shape == (100, 3) and d.x.shape == (100, 3) and d.y.shape == (100,)
        src = (d.x[:, 0] * 500).round().long()  # which original point each one is
        assert src.unique().numel() == 100
        assert torch.equal(d.y, frame.y[src])
        assert torch.equal(d.pos[:, 2], frame.pos[src, 2])  # rotation about +z, mirror y
        torch.testing.assert_close(d.pos[:, :2].norm(dim=1), frame.pos[src, :2].norm(dim=1))
        assert torch.equal(d.x[:, 1], d.pos[:, 2])
        torch.testing.assert_close(d.x[:, 2], d.pos[:, :2].norm(dim=1) / 10)
    assert not torch.equal(a.x[:, 0], b.x[:, 0])  # a fresh subset per access
    torch.manual_seed(0)
    assert torch.equal(ds[0].pos, a.pos)  # reproducible from torch's seed
    fixed = seg.RandomSubsets([frame], 100, augment=False)[0]
    src = (fixed.x[:, 0] * 500).round().long()
    assert torch.equal(fixed.pos, frame.pos[src])


def test_lidar_frames_cache_round_trip(tmp_path):
    seg = _seg()
    first = seg.lidar_frames("val", 1, 0, str(tmp_path))
    assert (tmp_path / "lidar_val_1_seed0.pt").is_file()
    again = seg.lidar_frames("val", 1, 0, str(tmp_path))
    for key in ("pos", "x", "y"):
        assert torch.equal(first[0][key], again[0][key])
    assert first[0].y.dtype == torch.long and first[0].y.max() < 8
