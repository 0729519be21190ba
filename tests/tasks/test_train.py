"""train / evaluate on tiny in-memory datasets: reproducibility, resume, checkpoints, logs."""

import csv
import math
from pathlib import Path

import pytest
import torch

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.tasks import TrainConfig, cosine_schedule, evaluate, load_checkpoint, train
from geo3d.tasks.checkpoint import save_checkpoint
from geo3d.tasks.evaluate import TaskEvaluator
from geo3d.tasks.metrics import confusion_matrix, metrics_from_confusion
from tests.tasks._tiny import (MeanAbsError, TinyCls, TinyRegressor, TinySeg, cls_dataset,
                               regression_dataset, seg_dataset)


def _cfg(**kw):
    base = dict(epochs=2, batch_size=4, lr=1e-2, progress=False, log_every=1, device="cpu",
                tensorboard=False)
    return TrainConfig(**{**base, **kw})


def _fresh(seed=0, cls=TinySeg):
    torch.manual_seed(seed)
    return cls()


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not():
    data = seg_dataset()
    runs = [(_fresh(), 0), (_fresh(), 0), (_fresh(), 1)]
    for model, seed in runs:
        train(model, data, _cfg(seed=seed))
    assert _same(runs[0][0], runs[1][0])
    assert not _same(runs[0][0], runs[2][0])   # other shuffling and dropout


def test_loss_decreases_and_classification_is_learned():
    model = _fresh(cls=TinyCls)
    result = train(model, cls_dataset(), _cfg(epochs=8, lr=0.1), val_dataset=cls_dataset(6, seed=1))
    losses = [r["loss"] for r in result.history if r["split"] == "train"]
    assert losses[-1] < losses[0]
    assert result.final["OA"] == 1.0 and result.best["OA"] == 1.0
    assert result.stopped == "completed" and result.epochs == 8 and result.steps == 8 * 3


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    data, val = seg_dataset(), seg_dataset(4, seed=1)
    full = _fresh()
    train(full, data, _cfg(out_dir=tmp_path / "a"), val_dataset=val)
    # stop after epoch 1 (3 steps), then resume for epoch 2 from last.pt
    first = _fresh()
    r1 = train(first, data, _cfg(out_dir=tmp_path / "b", max_steps=3), val_dataset=val)
    assert r1.stopped == "max_steps" and r1.epochs == 1
    resumed = _fresh(seed=123)   # other initial weights: everything must come from last.pt
    r2 = train(resumed, data, _cfg(out_dir=tmp_path / "b", resume=True), val_dataset=val)
    assert _same(full, resumed) and r2.steps == 6 and r2.epochs == 2
    rows = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert [r["step"] for r in rows] == [r["step"] for r in csv.DictReader(open(tmp_path / "a" / "log.csv"))]


def test_resume_from_inside_an_epoch(tmp_path):
    data = seg_dataset()
    full = _fresh()
    train(full, data, _cfg(epochs=3))
    part = _fresh()
    r = train(part, data, _cfg(epochs=3, out_dir=tmp_path, max_steps=4))   # 1 epoch + 1 batch
    assert r.stopped == "max_steps" and load_checkpoint(tmp_path / "last.pt")["batch_in_epoch"] == 1
    rest = _fresh(seed=5)
    train(rest, data, _cfg(epochs=3, resume=tmp_path / "last.pt"))
    assert _same(full, rest)


def test_checkpoint_contents_and_csv_and_tensorboard(tmp_path):
    model = _fresh()
    result = train(model, seg_dataset(), _cfg(out_dir=tmp_path, tensorboard=True),
                   val_dataset=seg_dataset(4, seed=1), model_name="tiny", model_kwargs={"a": 1},
                   class_names=["x", "y", "z"])
    state = load_checkpoint(result.last_checkpoint)
    assert state["model_name"] == "tiny" and state["model_kwargs"] == {"a": 1}
    assert state["epoch"] == 2 and state["step"] == 6 and state["task"] == "segmentation"
    assert TrainConfig.from_dict(state["config"]) == _cfg(out_dir=str(tmp_path), tensorboard=True)
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "random"}
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value)
    assert result.best_checkpoint == tmp_path / "best.pt"
    assert set(result.best["iou"]) == {"x", "y", "z"}
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["split"] for r in rows] == ["train"] * 3 + ["val"] + ["train"] * 3 + ["val"]
    assert float(rows[-1]["mIoU"]) == pytest.approx(result.final["mIoU"], rel=1e-5)
    assert float(rows[0]["lr"]) == pytest.approx(1e-2)   # the lr used by step 1
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert not list(tmp_path.glob(".*.tmp"))


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "step": 1})

    def torn_write(self, data):   # write half the bytes, then "crash"
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", torn_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "step": 2})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_bad_checkpoints_raise_file_format_error(tmp_path):
    with pytest.raises(FileFormatError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    save_checkpoint(tmp_path / "ok.pt", {"model": {}})
    blob = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FileFormatError, match="cut.pt.*corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(FileFormatError, match="not a geo3d checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileFormatError, match="cut.pt"):
        train(_fresh(), seg_dataset(), _cfg(resume=tmp_path / "cut.pt"))


def test_float64_training():
    model = _fresh().double()
    train(model, seg_dataset(), _cfg(epochs=1))
    assert all(p.dtype == torch.float64 and torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(evaluate(model, seg_dataset(3))["loss"])


def test_evaluate_matches_a_direct_computation_for_any_batch_size():
    model = _fresh()
    data = seg_dataset(7)
    model.train()
    results = [evaluate(model, data, batch_size=b) for b in (1, 3, 7)]
    assert model.training, "the train/eval mode is restored"
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(d) for d in data])
    y = torch.cat([d.y for d in data])
    expected = metrics_from_confusion(confusion_matrix(logits, y, 3))
    ce = torch.nn.functional.cross_entropy(logits, y, ignore_index=-1).item()
    for r in results:
        assert r["OA"] == expected["OA"] and r["mIoU"] == pytest.approx(expected["mIoU"])
        assert r["loss"] == pytest.approx(ce, rel=1e-5) and r["num_samples"] == 7
        assert r["iou"] == pytest.approx(expected["iou"])


def test_evaluate_classification_reports_oa_and_macc_only():
    r = evaluate(_fresh(cls=TinyCls), cls_dataset(5), num_classes=2, class_names=["neg", "pos"])
    assert {"loss", "OA", "mAcc", "acc"} <= set(r) and "mIoU" not in r
    assert set(r["acc"]) == {"neg", "pos"}


def test_cosine_schedule():
    assert cosine_schedule(0, 10) == 1.0 and cosine_schedule(10, 10) == pytest.approx(0.0)
    assert cosine_schedule(5, 10) == pytest.approx(0.5)
    assert [cosine_schedule(s, 10, warmup_steps=2) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert cosine_schedule(10, 10, min_lr_ratio=0.1) == pytest.approx(0.1)
    # a spent time budget paces the decay when it is ahead of the steps, never behind
    assert cosine_schedule(2, 10, elapsed_fraction=0.5) == pytest.approx(0.5)
    assert cosine_schedule(5, 10, elapsed_fraction=0.1) == pytest.approx(0.5)
    assert cosine_schedule(0, 10, warmup_steps=2, elapsed_fraction=0.9) == 0.5


def test_time_schedule_reaches_the_end_lr_when_the_budget_runs_out(tmp_path):
    budget = 0.03  # minutes; the planned 3,000 steps would take far longer
    cfg = _cfg(epochs=1000, max_minutes=budget, schedule="time", out_dir=tmp_path)
    r = train(_fresh(), seg_dataset(), cfg)
    lrs = [row["lr"] for row in r.history if row["split"] == "train"]
    assert r.stopped == "max_minutes" and r.steps < 1000
    assert lrs[0] > 0.9 * cfg.lr and lrs[-1] < 0.1 * cfg.lr  # steps alone: still ~lr
    assert load_checkpoint(tmp_path / "last.pt")["minutes"] >= budget
    # max_minutes counts the whole run: resumed, it is already spent
    again = train(_fresh(), seg_dataset(), _cfg(epochs=1000, max_minutes=budget, schedule="time",
                                                out_dir=tmp_path, resume=True))
    assert again.stopped == "max_minutes" and again.steps == r.steps + 1


def test_bad_arguments_are_named():
    with pytest.raises(InvalidInputError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(InvalidInputError, match="lr"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(InvalidInputError, match="device"):
        TrainConfig(device="tpu")
    with pytest.raises(InvalidInputError, match="resume=True needs out_dir"):
        TrainConfig(resume=True)
    with pytest.raises(InvalidInputError, match="schedule must be"):
        TrainConfig(schedule="linear")
    with pytest.raises(InvalidInputError, match="max_minutes"):
        TrainConfig(schedule="time")
    with pytest.raises(InvalidInputError, match="batch_size"):
        TrainConfig(batch_size=True)
    with pytest.raises(InvalidInputError, match="model.task"):
        train(torch.nn.Linear(3, 2), seg_dataset(), _cfg())
    with pytest.raises(InvalidInputError, match="dataset is empty"):
        train(_fresh(), [], _cfg())
    with pytest.raises(InvalidInputError, match="config must be a TrainConfig"):
        train(_fresh(), seg_dataset(), {"epochs": 1})
    with pytest.raises(InvalidInputError, match="gradient norm"):
        train(_fresh(), seg_dataset(), _cfg(lr=1e30, epochs=3))


def test_a_custom_task_trains_and_evaluates_with_its_own_evaluator(tmp_path):
    data = regression_dataset(16)
    model = _fresh(cls=TinyRegressor)
    before = evaluate(model, data, batch_size=5)
    with torch.no_grad():
        expected = sum(float((model(d) - d.target).abs().sum()) for d in data) / len(data)
    assert set(before) == {"loss", "MAE", "num_samples"} and before["num_samples"] == 16
    assert before["MAE"] == pytest.approx(expected, rel=1e-5)
    result = train(model, data, _cfg(epochs=6, lr=0.1, out_dir=str(tmp_path)), val_dataset=data)
    vals = [row for row in result.history if row["split"] == "val"]
    # the best checkpoint is the one with the LOWEST error: higher_is_better is False
    assert result.best["MAE"] == min(row["MAE"] for row in vals)
    assert result.best["MAE"] < before["MAE"]
    assert load_checkpoint(result.best_checkpoint)["best"]["MAE"] == result.best["MAE"]


def test_a_custom_task_needs_an_evaluator():
    class NoEvaluator(TinyRegressor):
        make_evaluator = None

    with pytest.raises(InvalidInputError, match="make_evaluator"):
        evaluate(NoEvaluator(), regression_dataset(2))
    assert isinstance(MeanAbsError(), TaskEvaluator)
