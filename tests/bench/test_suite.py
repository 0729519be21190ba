"""run_suite on small fake benchmark scripts: results.json, tables, plots, index, failures."""

import json
import textwrap

import pytest

from geo3d.bench import BenchStep, run_suite
from geo3d.cli import main
from geo3d.errors import InvalidInputError

_GOOD = textwrap.dedent('''
    import argparse, json, pathlib
    ap = argparse.ArgumentParser(); ap.add_argument("--out"); ap.add_argument("--quick", action="store_true")
    out = pathlib.Path(ap.parse_args().out)
    rows = [dict(benchmark="toy", task="toy seg", model=m, metric="mIoU", value=v, params=p,
                 macs=p * 100.0, latency_ms=l) for m, v, p, l in
            [("small", 0.6, 10, 1.0), ("big", 0.8, 100, 9.0), ("bad", 0.5, 200, 20.0)]]
    (out / "toy.json").write_text(json.dumps({"results": rows}))
    (out / "toy.md").write_text("| toy |")
    (out / "picture.png").write_bytes(b"not really a png")
''')


@pytest.fixture()
def bench_dir(tmp_path):
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "good.py").write_text(_GOOD)
    (d / "crash.py").write_text("raise SystemExit('boom: the crash message')\n")
    (d / "norows.py").write_text(_GOOD.replace('{"results": rows}', '{"rows": rows}')
                                 .replace("toy.json", "norows.json"))
    return d


def test_suite_gathers_rows_plots_and_index_and_records_failures(tmp_path, bench_dir):
    steps = [BenchStep("toy", "good.py", ("--quick",)), BenchStep("crash", "crash.py"),
             BenchStep("absent", "absent.py"), BenchStep("norows", "norows.py")]
    out = tmp_path / "report"
    summary = run_suite("quick", out, steps=steps, bench_dir=bench_dir, progress=False)
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert status["toy"] == "ok" and status["absent"] == "missing"
    assert status["crash"].startswith("failed (exit 1)")
    assert status["norows"].startswith("no results")
    crash = next(s for s in summary["steps"] if s["name"] == "crash")
    assert "boom: the crash message" in "\n".join(crash["log_tail"])
    saved = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in saved["rows"]] == ["small", "big", "bad"]
    assert saved["plots"] == ["plots/toy_toy_seg.png"]
    assert (out / "plots/toy_toy_seg.png").read_bytes()[:4] == b"\x89PNG"
    index = (out / "index.md").read_text()
    for link in ("results.json", "toy/toy.md", "plots/toy_toy_seg.png", "toy/picture.png"):
        assert f"({link})" in index
    pictures = index.split("## Pictures")[1].split("##")[0]
    assert "toy/picture.png" in pictures and "plots/" not in pictures
    table = (out / "results.md").read_text()
    assert "small | dense | mIoU ↑ | 0.6 | 10 |" in table


def test_only_filters_and_unknown_names_are_errors(tmp_path, bench_dir):
    steps = [BenchStep("toy", "good.py"), BenchStep("crash", "crash.py")]
    summary = run_suite("full", tmp_path / "o", only=["toy"], steps=steps, bench_dir=bench_dir,
                        progress=False)
    assert [s["name"] for s in summary["steps"]] == ["toy"]
    with pytest.raises(InvalidInputError, match="unknown benchmark"):
        run_suite("quick", tmp_path / "o", only=["nope"], steps=steps, bench_dir=bench_dir)
    with pytest.raises(InvalidInputError, match="suite"):
        run_suite("medium", tmp_path / "o")


def test_cli_reports_bad_names_without_traceback(tmp_path, capsys):
    assert main(["bench", "--only", "nope", "--out", str(tmp_path), "--quiet"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_a_stuck_script_is_stopped_and_the_suite_goes_on(tmp_path, bench_dir, monkeypatch):
    (bench_dir / "stuck.py").write_text("import time\ntime.sleep(600)\n")
    original = BenchStep.timeout_minutes
    monkeypatch.setattr(BenchStep, "timeout_minutes",  # 3 s instead of the 5-minute floor
                        lambda self: 0.05 if self.name == "stuck" else original(self))
    summary = run_suite("quick", tmp_path / "o", progress=False, bench_dir=bench_dir,
                        steps=[BenchStep("stuck", "stuck.py"), BenchStep("toy", "good.py")])
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert status == {"stuck": "timed out after 0.05 min", "toy": "ok"}
    assert next(s for s in summary["steps"] if s["name"] == "stuck")["seconds"] < 60
    monkeypatch.undo()
    assert BenchStep("x", "x.py", minutes=3.0).timeout_minutes() == 12.0
    assert BenchStep("x", "x.py", minutes=0.5).timeout_minutes() == 5.0
    assert BenchStep("x", "x.py", timeout=None).timeout_minutes() is None
