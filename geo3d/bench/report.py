"""The suite's report: ``results.json``, ``results.md``, plots with the Pareto front, ``index.md``.

Plots use matplotlib (Agg backend, no display needed). Everything is written atomically.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from geo3d.bench.results import ResultRow, load_rows, pareto_front
from geo3d.errors import FileFormatError

__all__ = ["write_report", "results_markdown", "plot_task"]

_COSTS = (("latency_ms", "latency (ms)"), ("macs", "MACs"))


def _num(value, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:,.{digits}f}"


def results_markdown(rows: list[ResultRow]) -> str:
    """One Markdown table per task: accuracy and cost of every model variant."""
    by_task = defaultdict(list)
    for row in rows:
        by_task[(row.benchmark, row.task)].append(row)
    parts = []
    for (bench, task), group in by_task.items():
        parts += [f"### {task} ({bench})", "",
                  "model | variant | metric | value | params | MMACs | latency ms | peak MiB "
                  "| size MB", "--- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---:"]
        for r in group:
            arrow = "↑" if r.higher_is_better else "↓"
            params = "-" if r.params is None else f"{r.params:,}"
            parts.append(f"{r.model} | {r.variant} | {r.metric} {arrow} | {r.value:.4g} | "
                         f"{params} | {_num(r.macs, 1, 1e-6)} | {_num(r.latency_ms)} | "
                         f"{_num(r.peak_memory_mib)} | {_num(r.size_bytes, 2, 1e-6)}")
        parts.append("")
    return "\n".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def plot_task(rows: list[ResultRow], path: Path) -> bool:
    """Accuracy against latency and MACs for one task, Pareto front marked; False if < 2 rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geo3d.io.atomic import atomic_write_bytes

    usable = [(key, label) for key, label in _COSTS
              if sum(getattr(r, key) is not None for r in rows) >= 2]
    if len(rows) < 2 or not usable:
        return False
    fig, axes = plt.subplots(1, len(usable), figsize=(5.5 * len(usable), 4.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], usable):
        pts = [r for r in rows if getattr(r, key) is not None]
        costs, values = [getattr(r, key) for r in pts], [r.value for r in pts]
        front = pareto_front(costs, values, pts[0].higher_is_better)
        ax.scatter(costs, values, c="tab:blue", zorder=2)
        for r, c, v in zip(pts, costs, values):
            ax.annotate(f"{r.model} {r.variant}", (c, v), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.plot([costs[i] for i in front], [values[i] for i in front], "-o", color="tab:red",
                mfc="none", ms=11, label="Pareto front", zorder=1)
        ax.set_xscale("log")
        ax.set(xlabel=label, ylabel=f"{pts[0].metric}", title=pts[0].task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    return True


def _index(summary: dict, out: Path, plots: list[str]) -> str:
    lines = [f"# geo3d benchmark report ({summary['suite']} suite)", "",
             f"{len(summary['rows'])} results from {len(summary['steps'])} benchmarks in "
             f"{summary['minutes']} minutes. All results in one schema: "
             f"[results.json](results.json); tables: [results.md](results.md).", "",
             "benchmark | status | seconds | tables", "--- | --- | ---: | ---"]
    for s in summary["steps"]:
        link = f"[{s['markdown']}]({s['markdown']})" if s.get("markdown") else "-"
        lines.append(f"{s['name']} | {s['status']} | {s['seconds']} | {link}")
    if plots:
        lines += ["", "## Accuracy against cost", ""]
        lines += [f"![{p}]({p})" for p in plots]
    pictures = sorted(str(p.relative_to(out)) for ext in ("*.png", "*.gif")
                      for p in out.glob(f"*/{ext}") if p.parent.name != "plots")
    if pictures:  # one paragraph per benchmark, its name in bold
        lines += ["", "## Pictures", ""]
        for bench in sorted({p.split("/")[0] for p in pictures}):
            lines += [f"**{bench}**", ""]
            lines += [f"![{p}]({p})" for p in pictures if p.split("/")[0] == bench] + [""]
    lines += ["", "## Results", "", results_markdown([ResultRow(**r) for r in summary["rows"]])]
    return "\n".join(lines)


def write_report(summary: dict, out: Path) -> dict:
    """Gather the rows of every successful step and write the report files; returns the summary."""
    from geo3d.bench.suite import read_step_json
    from geo3d.io.atomic import atomic_write_bytes

    rows: list[ResultRow] = []
    for record in summary["steps"]:
        if record["status"] != "ok":
            continue
        try:
            got = load_rows(read_step_json(out, record), source=record["json"])
        except FileFormatError as exc:
            record["status"] = f"no results: {exc}"
            continue
        rows += got
    summary = {**summary, "rows": [r.to_dict() for r in rows]}
    by_task = defaultdict(list)
    for r in rows:
        by_task[(r.benchmark, r.task)].append(r)
    plots = []
    for (bench, task), group in by_task.items():
        name = f"plots/{_slug(bench)}_{_slug(task)}.png"
        if plot_task(group, out / name):
            plots.append(name)
    summary["plots"] = plots
    atomic_write_bytes(out / "results.json", json.dumps(summary, indent=2, default=str).encode())
    atomic_write_bytes(out / "results.md", results_markdown(rows).encode())
    atomic_write_bytes(out / "index.md", _index(summary, out, plots).encode())
    return summary
