"""``geo3d bench --suite quick|full --out DIR``: run the benchmark suite and write the report."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from geo3d.bench import run_suite

    summary = run_suite(args.suite, args.out, only=args.only, progress=not args.quiet)
    for step in summary["steps"]:
        print(f"  {step['name']:<16} {step['status']:<12} {step['seconds']:>7.1f} s")
    print(f"{len(summary['rows'])} results in {summary['minutes']} min; "
          f"report: {Path(args.out).resolve() / 'index.md'}")
    failed = [s["name"] for s in summary["steps"] if s["status"] not in ("ok", "missing")]
    return 1 if failed else 0


def register(sub) -> None:
    """Add ``bench`` to the sub-parsers."""
    p = sub.add_parser("bench", help="run the benchmark suite; write results.json and index.md")
    p.add_argument("--suite", default="quick", choices=["quick", "full"],
                   help="quick: <= 15 min on 2 cores; full: the issue targets (default: quick)")
    p.add_argument("--out", default="out/bench", help="output folder (default: %(default)s)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="run only these benchmarks (e.g. neighbors tracking)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
