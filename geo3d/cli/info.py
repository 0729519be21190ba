"""``geo3d info PATH``: read a point cloud or mesh and summarise it."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
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


def register(sub) -> None:
    """Add ``info`` to the sub-parsers."""
    info = sub.add_parser("info", help="read a point cloud or mesh file and summarise it")
    info.add_argument("path")
    info.add_argument("--format", default=None, help="point-cloud format (default: from the name)")
    info.add_argument("--mesh", action="store_true", help="read the file as a mesh")
    info.set_defaults(func=_run)
