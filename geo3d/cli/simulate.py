"""``geo3d simulate`` and ``geo3d demo``: simulate a LiDAR sequence, write PLY + JSON + a picture."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from geo3d.sim.export import export_sequence

    summary = export_sequence(
        out_dir=Path(args.out), frames=args.frames, seed=args.seed, split=args.split,
        progress=not args.quiet,
    )
    print(f"wrote {summary['num_frames']} frames ({summary['total_points']:,} points) "
          f"to {Path(args.out).resolve()}")
    print(f"summary: {Path(args.out).resolve() / 'summary.json'}")
    print(f"picture: {Path(args.out).resolve() / summary['picture']}")
    return 0


def register(sub) -> None:
    """Add ``simulate`` and ``demo`` to the sub-parsers."""
    sim = sub.add_parser("simulate", help="simulate a LiDAR sequence and write PLY + JSON")
    sim.add_argument("--out", default="out/simulate", help="output folder (default: %(default)s)")
    sim.add_argument("--frames", type=int, default=10, help="frames at 10 Hz (default: %(default)s)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    sim.add_argument("--split", default="test", choices=["train", "val", "test"])
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_run)

    demo = sub.add_parser("demo", help="the main job: simulate a sequence and report")
    demo.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--frames", type=int, default=10)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=_run, split="test")
