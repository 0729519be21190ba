"""Each benchmark script's ``result_rows`` turns the JSON it wrote into suite rows.

The inputs in tests/bench/data/ are trimmed copies of JSON the scripts wrote in earlier
runs (per-class tables and machine info dropped). The rows must survive a JSON round
trip through :func:`geo3d.bench.load_rows` and carry the figures of that JSON.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from geo3d.bench import load_rows
from geo3d.bench.results import ResultRow

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(BENCH))


def _script(name: str):
    """benchmarks/<name>.py imported as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(name: str) -> tuple[dict, list[ResultRow]]:
    """The saved JSON of ``name`` and its rows after a JSON round trip and load_rows."""
    result = json.loads((DATA / f"{name}.json").read_text())
    rows = _script(name).result_rows(result)
    loaded = load_rows(json.loads(json.dumps({"results": rows})), name)
    assert loaded and all(r.benchmark == name for r in loaded)
    return result, loaded


def _close(a, b) -> bool:
    return (a is None and b is None) or math.isclose(a, b, rel_tol=1e-12)


def _same_cost(row: ResultRow, cost: dict) -> None:
    for key in ("params", "macs", "latency_ms", "peak_memory_mib", "size_bytes"):
        assert _close(getattr(row, key), cost.get(key)), key


def test_segmentation_rows():
    result, rows = _rows("segmentation")
    expected = [(task, r) for task, g in result["tasks"].items() for r in g["rows"]]
    assert len(rows) == len(expected) == 6
    assert len({r.task for r in rows}) == len(result["tasks"]) == 2
    for row, (task, r) in zip(rows, expected):
        assert row.model == r["model"] and row.metric == "mIoU" and row.higher_is_better
        assert row.value == r["test"]["test"]["mIoU"] and 0 <= row.value <= 1
        assert row.metrics["OA"] == r["test"]["test"]["OA"]
        _same_cost(row, r["cost"])


def test_classification_rows_aligned_and_rotated_are_two_tasks():
    result, rows = _rows("classification")
    n = len(result["rows"])
    assert len(rows) == 2 * n and len({r.task for r in rows}) == 2
    for i, r in enumerate(result["rows"]):
        aligned, rotated = rows[i], rows[n + i]
        assert aligned.model == rotated.model == r["model"]
        assert "aligned" in aligned.task and "rotated" in rotated.task
        assert aligned.value == r["aligned_acc"] and rotated.value == r["rotated_acc"]
        assert aligned.metric == "OA" and aligned.metrics["drop_points"] == r["drop_points"]
        _same_cost(rotated, r["cost"])


def test_detection_rows_carry_map_3d_and_nuscenes():
    result, rows = _rows("detection")
    assert len(rows) == len(result["rows"])
    for row, r in zip(rows, result["rows"]):
        assert row.metric == "mAP_3d" and row.value == r["test"]["mAP_3d_kitti"]
        assert row.metrics["nuscenes_mAP"] == r["test"]["nuscenes_mAP"]
        _same_cost(row, r["cost"])


def test_detection_rows_skip_models_without_evaluation():
    module = _script("detection")
    assert module.result_rows({"rows": [{"model": "pointnet2_det", "train": {}}]}) == []


def test_tracking_rows_one_per_association_metric():
    result, rows = _rows("tracking")
    settings = [r["setting"] for r in result["gt_noise"]]
    assert [r.variant for r in rows] == settings and len(set(settings)) == 4
    for row, r in zip(rows, result["gt_noise"]):
        assert row.metric == "MOTA" and row.value == r["metrics"]["MOTA"]
        assert math.isclose(row.latency_ms * r["fps_wall"], 1000.0)
        assert math.isclose(row.metrics["cpu_ms_per_frame"] * r["fps_cpu"], 1000.0)
        assert row.metrics["HOTA"] == r["metrics"]["HOTA"]


def test_tracking_rows_include_end_to_end_when_run():
    module = _script("tracking")
    result = json.loads((DATA / "tracking.json").read_text())
    result["end_to_end"] = {"status": "ran", "rows": result["gt_noise"][:1]}
    rows = module.result_rows(result)
    assert len(rows) == len(result["gt_noise"]) + 1
    assert rows[-1]["task"] != rows[0]["task"]


def test_temporal_rows_per_threshold():
    result, rows = _rows("temporal")
    summary = result["summary"]
    assert [r.variant for r in rows] == ["full recomputation"] + [
        f"threshold {k}" for k in summary if k != "full"]
    assert "threshold 0.5" in [r.variant for r in rows]
    for row, s in zip(rows, summary.values()):
        assert row.value == s["mIoU"] and row.macs == s["macs"]
        assert row.latency_ms == s["wall_ms"] and row.metrics["macs_ratio"] == s["macs_ratio"]
    assert rows[0].macs > min(r.macs for r in rows)  # reuse computes fewer MACs


def test_hand_pose_rows_lower_is_better_per_ablation():
    result, rows = _rows("hand_pose")
    assert len(rows) == len(result["runs"]) == 10
    assert len({(r.model, r.variant) for r in rows}) == 10
    for row, r in zip(rows, result["runs"]):
        assert row.metric == "mean_error_mm" and row.higher_is_better is False
        assert row.value == r["test"]["test"]["mean_error_mm"]
        assert r["config"] in row.variant and row.model == r["model"]
        assert row.metrics["success_20mm"] == r["test"]["test"]["success_rate"]["20mm"]
        _same_cost(row, r["cost"])


def test_make_row_keeps_numeric_metrics_and_turns_missing_value_into_nan():
    from _rows import cost_fields, make_row

    row = make_row("b", "t", "m", "mIoU", None, variant="v",
                   metrics={"a": 1, "b": None, "c": True, "d": "text", "e": 0.5},
                   **cost_fields({"params": 3, "macs": None, "threads": 2}))
    assert math.isnan(row["value"]) and row["params"] == 3 and row["macs"] is None
    assert row["metrics"] == {"a": 1.0, "e": 0.5}
    assert cost_fields(None) == {}


@pytest.mark.parametrize("bad", [{"metric": ""}, {"model": None}])
def test_make_row_validates(bad):
    from _rows import make_row

    from geo3d.errors import InvalidInputError

    kwargs = dict(benchmark="b", task="t", model="m", metric="OA", value=0.5) | bad
    with pytest.raises(InvalidInputError):
        make_row(**kwargs)


def test_mesh_rows():
    result, rows = _rows("mesh")
    expected = [(name, split, r) for name, r in result["models"].items()
                for split in r["metrics"]]
    assert len(rows) == len(expected) == 4
    assert {r.task for r in rows} == {"mesh correspondence",
                                      "mesh correspondence (re-triangulated)"}
    for row, (name, split, r) in zip(rows, expected):
        assert row.model == name and row.metric == "exact" and row.higher_is_better
        assert row.value == r["metrics"][split]["exact"]
        assert row.metrics["part_mIoU"] == r["metrics"][split]["part_mIoU"]
        assert ("re-triangulated" in row.task) == ("retri" in split)
        _same_cost(row, r["cost"])


def test_efficiency_rows_leave_out_variants_that_failed():
    result, rows = _rows("efficiency")
    applied = [r for r in result["rows"] if "error" not in r]
    assert len(rows) == len(applied) < len(result["rows"])
    for row, r in zip(rows, applied):
        assert (row.model, row.variant, row.value) == (r["model"], r["variant"], r["mIoU"])
        assert row.params == r["profile"]["params"] and row.macs == r["profile"]["macs"]
        assert row.metrics["nonzero_params"] == r["profile"]["nonzero_params"]
        assert _close(row.latency_ms, r.get("latency_ms"))
