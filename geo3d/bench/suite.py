"""Run the benchmark scripts of a suite, each in its own process, and report.

Each script runs as ``python benchmarks/<script> <args> --out DIR/<name>`` with its output
in ``DIR/<name>/log.txt``. A script that fails is recorded (with the end of its log) and
the suite goes on; ``run_suite`` returns the summary that ``results.json`` holds. Written
here: no library runs a suite of scripts and gathers their results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from tqdm.auto import tqdm

from geo3d.errors import FileFormatError, InvalidInputError

__all__ = ["BenchStep", "SUITES", "run_suite", "benchmarks_dir"]


@dataclass(frozen=True)
class BenchStep:
    """One script of a suite.

    Attributes:
        name: Output sub-folder and the JSON's stem (``DIR/<name>/<name>.json``).
        script: File name in ``benchmarks/``.
        args: Command-line arguments (``--out`` is added).
        minutes: Expected duration on 2 cores, for the progress bar.
        timeout: Kill the script after ``timeout * minutes`` (at least 5 minutes), so one
            stuck script cannot stall the suite; None: no limit. Default 4.
    """

    name: str
    script: str
    args: tuple = ()
    minutes: float = 1.0
    timeout: Optional[float] = 4.0

    def timeout_minutes(self) -> Optional[float]:
        """The wall-time limit of this step in minutes (None: none)."""
        return None if self.timeout is None else max(5.0, self.timeout * self.minutes)


_QUICK = (  # minutes: measured on an idle 2-core machine (rounded up)
    BenchStep("neighbors", "neighbors.py", ("--quick",), 1.2),
    BenchStep("simulator", "simulator.py", ("--quick",), 0.2),
    BenchStep("segmentation", "segmentation.py",
              ("--quick", "--minutes", "0.25", "--models", "dgcnn_seg", "pointnet2_seg"), 2.0),
    BenchStep("classification", "classification.py", ("--quick", "--minutes", "0.2"), 1.6),
    BenchStep("mesh", "mesh.py", ("--quick", "--minutes", "0.5"), 1.6),
    BenchStep("detection", "detection.py", ("--quick",), 1.4),
    BenchStep("tracking", "tracking.py", ("--quick",), 0.4),
    BenchStep("temporal", "temporal.py", ("--quick",), 1.3),
    BenchStep("hand_pose", "hand_pose.py",
              ("--quick", "--minutes", "0.2", "--configs", "none", "all"), 1.8),
    BenchStep("efficiency", "efficiency.py",
              ("--quick", "--minutes", "0.3", "--models", "pointnet2_seg",
               "--variants", "ptq_int8", "structured50_ft"), 2.5),
)
#: Minutes of each script at its defaults on 2 cores: mostly the training budgets (20 min
#: per model and task; hand pose: 2 sizes x 5 loss ablations), estimated, not timed end to end.
_FULL_MINUTES = {"neighbors": 3, "simulator": 2, "segmentation": 170, "classification": 65,
                 "mesh": 35, "detection": 50, "tracking": 5, "temporal": 20, "hand_pose": 210,
                 "efficiency": 170, "conditional": 30}
SUITES: dict[str, tuple[BenchStep, ...]] = {
    "quick": _QUICK,
    "full": tuple(BenchStep(s.name, s.script, (), _FULL_MINUTES[s.name]) for s in _QUICK)
    + (BenchStep("conditional", "conditional.py", (), _FULL_MINUTES["conditional"]),),
}


def benchmarks_dir() -> Path:
    """The ``benchmarks/`` folder of the source checkout geo3d runs from."""
    path = Path(__file__).resolve().parents[2] / "benchmarks"
    if not path.is_dir():
        raise FileFormatError(f"no benchmarks folder at {path}: the suite runs from a source "
                              f"checkout of geo3d (pip install -e .)")
    return path


def _run_step(step: BenchStep, out_dir: Path, bench_dir: Path) -> dict:
    step_dir = out_dir / step.name
    step_dir.mkdir(parents=True, exist_ok=True)
    script = bench_dir / step.script
    record = {"name": step.name, "script": step.script, "args": list(step.args),
              "json": None, "markdown": None}
    if not script.is_file():
        return {**record, "status": "missing", "seconds": 0.0}
    start = time.monotonic()
    limit = step.timeout_minutes()
    with open(step_dir / "log.txt", "w") as log:
        try:
            proc = subprocess.run([sys.executable, str(script), *step.args, "--out", str(step_dir)],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=bench_dir.parent,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False,
                                  timeout=None if limit is None else 60 * limit)
        except subprocess.TimeoutExpired:
            return {**record, "status": f"timed out after {limit:g} min",
                    "seconds": round(time.monotonic() - start, 1)}
    record["seconds"] = round(time.monotonic() - start, 1)
    result_json = step_dir / f"{step.name}.json"
    if proc.returncode != 0 or not result_json.is_file():
        tail = (step_dir / "log.txt").read_text(errors="replace").strip().splitlines()[-5:]
        return {**record, "status": f"failed (exit {proc.returncode})", "log_tail": tail}
    markdown = step_dir / f"{step.name}.md"
    return {**record, "status": "ok", "json": str(result_json.relative_to(out_dir)),
            "markdown": str(markdown.relative_to(out_dir)) if markdown.is_file() else None}


def run_suite(suite: str, out_dir: str | os.PathLike, only: Optional[Sequence[str]] = None,
              progress: bool = True, steps: Optional[Sequence[BenchStep]] = None,
              bench_dir: Optional[Path] = None) -> dict:
    """Run a suite's scripts and write ``results.json``, tables, plots and ``index.md``.

    Args:
        suite: "quick" (<= 15 minutes on 2 cores) or "full" (the issue targets at the
            scripts' defaults: about 11 hours on 2 cores, most of it fixed training budgets).
        out_dir: Output folder (created).
        only: Run only the steps with these names. Default: all.
        progress: Show a tqdm bar over the steps. Default True.
        steps: Run these steps instead of the suite's (for tests).
        bench_dir: Folder of the scripts. Default: :func:`benchmarks_dir`.

    Returns:
        The summary written to ``results.json``: ``suite``, ``steps`` (name, status,
        seconds, paths), ``rows`` (every :class:`~geo3d.bench.results.ResultRow` as a dict)
        and ``minutes``.
    """
    from geo3d.bench.report import write_report

    if suite not in SUITES:
        raise InvalidInputError(f"suite must be one of {sorted(SUITES)}, got {suite!r}")
    chosen = list(steps if steps is not None else SUITES[suite])
    if only:
        unknown = sorted(set(only) - {s.name for s in chosen})
        if unknown:
            raise InvalidInputError(f"unknown benchmark(s) {unknown}; choose from "
                                    f"{[s.name for s in chosen]}")
        chosen = [s for s in chosen if s.name in set(only)]
    bench_dir = bench_dir or benchmarks_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start, records = time.monotonic(), []
    bar = tqdm(total=sum(s.minutes for s in chosen), unit="min", disable=not progress,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} min (planned) {postfix}")
    for step in chosen:
        bar.set_description(step.name)
        records.append(_run_step(step, out, bench_dir))
        bar.set_postfix_str(f"{step.name}: {records[-1]['status']}")
        bar.update(step.minutes)
    bar.close()
    summary = {"suite": suite, "steps": records,
               "minutes": round((time.monotonic() - start) / 60, 2)}
    return write_report(summary, out)


def read_step_json(out_dir: Path, record: dict) -> dict:
    """The JSON a successful step wrote."""
    path = out_dir / record["json"]
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{path}: cannot read the benchmark's JSON ({exc})") from None
