"""The ``geo3d`` command line.

Sub-commands:
    geo3d simulate --frames 10 --out DIR   simulate a LiDAR sequence, write PLY + JSON
    geo3d demo [--out DIR]                 the main job (for now: the simulation demo)
    geo3d info PATH                        read a point cloud or mesh and summarise it

Errors from bad input print one clear line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from geo3d.errors import Geo3dError

__all__ = ["main"]


def _cmd_simulate(args: argparse.Namespace) -> int:
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


def _cmd_info(args: argparse.Namespace) -> int:
    from geo3d.io import read_mesh, read_point_cloud

    path = Path(args.path)
    mesh_ext = {".off", ".obj", ".stl"}
    data = read_mesh(path) if path.suffix.lower() in mesh_ext or args.mesh else \
        read_point_cloud(path, format=args.format)
    print(f"{path}: {data}")
    pos = data.pos
    if pos.shape[0]:
        lo, hi = pos.min(0).values.tolist(), pos.max(0).values.tolist()
        print("bounds: min " + ", ".join(f"{v:.3f}" for v in lo)
              + " | max " + ", ".join(f"{v:.3f}" for v in hi))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geo3d", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="simulate a LiDAR sequence and write PLY + JSON")
    sim.add_argument("--out", default="out/simulate", help="output folder (default: %(default)s)")
    sim.add_argument("--frames", type=int, default=10, help="frames at 10 Hz (default: %(default)s)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    sim.add_argument("--split", default="test", choices=["train", "val", "test"])
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_cmd_simulate)

    demo = sub.add_parser("demo", help="the main job: simulate a sequence and report")
    demo.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--frames", type=int, default=10)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=_cmd_simulate, split="test")

    info = sub.add_parser("info", help="read a point cloud or mesh file and summarise it")
    info.add_argument("path")
    info.add_argument("--format", default=None, help="point-cloud format (default: from the name)")
    info.add_argument("--mesh", action="store_true", help="read the file as a mesh")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except Geo3dError as exc:
        print(f"geo3d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geo3d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
