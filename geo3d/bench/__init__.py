"""The benchmark suite: run the scripts in ``benchmarks/``, gather one results table, report.

``run_suite("quick", out_dir)`` (or ``geo3d bench --suite quick --out DIR``) runs each
benchmark script in its own process, then writes ``DIR/results.json`` (one schema for all
tasks, :class:`ResultRow`), ``DIR/results.md``, accuracy-vs-cost plots with the Pareto front
marked, and ``DIR/index.md`` linking every script's own tables and pictures.
"""

from geo3d.bench.results import ResultRow, load_rows, pareto_front
from geo3d.bench.suite import SUITES, BenchStep, run_suite

__all__ = ["ResultRow", "load_rows", "pareto_front", "SUITES", "BenchStep", "run_suite"]
