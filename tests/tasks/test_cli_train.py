"""`geo3d train` / `geo3d eval` end to end on a tiny DGCNN and two LiDAR frames."""

import csv

import pytest

from geo3d.cli import main
from geo3d.tasks import load_checkpoint

models = pytest.importorskip("geo3d.models")
if "dgcnn_seg" not in models.list_models():
    pytest.skip("geo3d.models has no dgcnn_seg yet", allow_module_level=True)

TINY = ["--model-arg", "k=8", "--model-arg", "width=16", "--model-arg", "emb_channels=32",
        "--model-arg", "head_channels=(16,)"]


def test_train_then_eval_reproduces_the_validation_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "dgcnn_seg", "--data", "synthetic-lidar", "--epochs", "2",
            "--batch-size", "1", "--size", "2", "--val-size", "1", "--num-points", "256",
            "--out", str(out), "--seed", "3", "--quiet", *TINY]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained dgcnn_seg for 2 epochs (4 steps, completed)" in printed
    state = load_checkpoint(out / "last.pt")
    assert state["model_name"] == "dgcnn_seg"
    assert state["model_kwargs"]["num_classes"] == 8 and state["model_kwargs"]["in_channels"] == 1
    assert state["metadata"]["num_points"] == 256 and state["epoch"] == 2
    val_rows = [r for r in csv.DictReader(open(out / "log.csv")) if r["split"] == "val"]
    assert len(val_rows) == 2

    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--size", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "dgcnn_seg (epoch 2, step 4) on synthetic-lidar val (1 samples)" in printed
    line = next(s for s in printed.splitlines() if s.startswith("loss"))
    values = dict(zip(line.split()[::2], map(float, line.split()[1::2])))
    assert values["mIoU"] == pytest.approx(float(val_rows[-1]["mIoU"]), abs=1e-4)
    assert values["OA"] == pytest.approx(float(val_rows[-1]["OA"]), abs=1e-4)

    # resume a finished run: nothing to do, same checkpoint
    assert main([*args, "--resume"]) == 0
    assert "for 2 epochs (4 steps" in capsys.readouterr().out


def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    assert main(["train", "--model", "nope", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown model name 'nope'" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--model", "dgcnn_cls", "--out", str(tmp_path), "--quiet"]) == 2
    assert "synthetic-lidar has per-point labels and boxes, not labels for 'classification'" \
        in capsys.readouterr().err
    assert main(["train", "--model", "dgcnn_seg", "--data", "nowhere", "--out", str(tmp_path),
                 "--quiet"]) == 2
    assert "unknown dataset 'nowhere'" in capsys.readouterr().err
    assert main(["train", "--model", "dgcnn_seg", "--epochs", "0", "--size", "1",
                 "--out", str(tmp_path), "--quiet"]) == 2
    assert "epochs must be an integer >= 1" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", "--checkpoint", str(tmp_path / "bad.pt")]) == 2
    assert "bad.pt" in capsys.readouterr().err
    assert main(["train", "--model", "dgcnn_seg", "--out", str(tmp_path), "--quiet",
                 "--model-arg", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
