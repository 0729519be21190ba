"""``geo3d view``: look at a file, a synthetic sample or a sequence, with a model's
predictions; in a window, or rendered to a PNG / GIF / MP4 with ``--out``."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo3d.errors import InvalidInputError
from geo3d.viewers.camera import PRESETS
from geo3d.viewers.sources import DATASETS


def _session(args: argparse.Namespace):
    from geo3d.viewers.session import ViewSession
    from geo3d.viewers.sources import load_frames, subsample

    model, names, num_points, data, seed = None, None, args.num_points, args.data, args.seed
    if args.checkpoint:
        from geo3d.viewers.inference import load_model

        model, state = load_model(args.checkpoint)
        meta = state.get("metadata") or {}
        names = state.get("class_names")
        if args.path is None and data is None:
            data = meta.get("data")
            if data not in DATASETS:
                raise InvalidInputError("give a PATH or --data (the checkpoint names no data set)")
        num_points = num_points if num_points is not None else meta.get("num_points")
    frames, data_names = load_frames(args.path, data, args.index, args.split, seed,
                                     args.length, args.format, args.mesh)
    frames = subsample(frames, num_points, seed)
    return ViewSession(frames, names or data_names, model, args.color_by, args.point_size,
                       args.budget)


def _run(args: argparse.Namespace) -> int:
    from geo3d.viewers.offscreen import render, render_sequence

    if args.out is not None and args.screenshot is not None:
        raise InvalidInputError("--out renders without a window; --screenshot needs the window")
    session = _session(args)
    frame = len(session) - 1 if args.frame is None else args.frame
    if args.out is None:
        from geo3d.viewers.app import ViewerApp

        title = f"geo3d view: {args.path or args.data}"
        return ViewerApp(session, args.camera, title, frame=frame).run(args.screenshot)
    out = Path(args.out)
    ext = out.suffix.lower()
    if ext == ".png":
        render(session.scene(frame), out, args.width, args.height, args.camera,
               legend=not args.no_legend)
    elif ext in (".gif", ".mp4"):
        render_sequence([session.scene(i) for i in range(len(session))], out, args.width,
                        args.height, args.camera, legend=not args.no_legend, fps=args.fps)
    else:
        raise InvalidInputError(f"--out must end in .png, .gif or .mp4, got {args.out!r}")
    pred = session.prediction(frame)
    if pred is not None:
        macs = "" if pred.macs is None else f", {pred.macs:,} MACs"
        print(f"model: {pred.latency_ms:.1f} ms{macs} on frame {frame}")
    print(f"wrote {out.resolve()}")
    return 0


def register(sub) -> None:
    """Add ``view`` to the sub-parsers."""
    p = sub.add_parser("view", help="look at a point cloud, mesh, sample or sequence "
                       "(window, or --out picture.png / movie.gif)")
    p.add_argument("path", nargs="?", default=None, help="point-cloud or mesh file")
    p.add_argument("--data", choices=DATASETS, default=None, help="a synthetic data set instead of a file")
    p.add_argument("--index", type=int, default=0, help="sample / sequence index (default: %(default)s)")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--length", type=int, default=10, help="frames of a sequence (default: %(default)s)")
    p.add_argument("--format", default=None, help="point-cloud format (default: from the name)")
    p.add_argument("--mesh", action="store_true", help="read PATH as a mesh")
    p.add_argument("--checkpoint", default=None, help="run the model of a geo3d train checkpoint")
    p.add_argument("--num-points", type=int, default=None,
                   help="random subset of points per frame (default: the checkpoint's, else all)")
    p.add_argument("--budget", type=float, default=None, help="compute budget for models that have one")
    p.add_argument("--color-by", default="auto",
                   help="auto, label, prediction, instance, score, intensity, error, height, "
                        "rgb or uniform (default: %(default)s)")
    p.add_argument("--point-size", type=float, default=2.0)
    p.add_argument("--camera", default=None, choices=PRESETS,
                   help="camera preset (default: bev for LiDAR --out, chase in the window; iso for objects)")
    p.add_argument("--frame", type=int, default=None, help="frame of a sequence (default: the last)")
    p.add_argument("--out", default=None, help="render to .png (one frame) or .gif/.mp4 (all) without a window")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of --out .gif/.mp4")
    p.add_argument("--no-legend", action="store_true", help="no legend in --out pictures")
    p.add_argument("--screenshot", default=None,
                   help="open the window, save the 3D view to this PNG, then close (scripts, tests)")
    p.set_defaults(func=_run)
