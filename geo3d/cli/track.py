"""``geo3d track``: track 3D boxes through a sequence and score the tracks.

Detections come from one of:

* ground truth plus noise (``--data synthetic-sequences`` or ``--data kitti-tracking
  --root ROOT``; ``--noise``, ``--dropout``, ``--false-positives`` ...: the tracker alone);
* a detector checkpoint run on each simulated frame (``--checkpoint``, a ``*_det`` model
  as ``geo3d detect`` takes);
* JSON files (``--detections DIR`` of one file per frame in name order, or one file with a
  ``"frames"`` list): each frame either ``geo3d detect``'s ``{"detections": [{"box":
  {x, y, z, l, w, h, yaw} or [7], "label": name or id, "score"}]}`` or ``{"boxes": [[7]],
  "box_labels": [...], "box_scores": [...]}``. Without ``--data`` they are tracked
  without scoring; with it they are scored against its frames (same count).

Boxes are in each frame's sensor frame; the tracker moves them into the world frame
with the frames' ``ego_pose`` where there is one (simulated sequences). Writes ``--out``
(JSON): the settings, per frame the reported tracks, and the metrics when ground truth
is known (:func:`geo3d.tasks.metrics.tracking.evaluate_tracking`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable, List

import torch
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError

_DATA = ("synthetic-sequences", "kitti-tracking")
_BOX_KEYS = ("x", "y", "z", "l", "w", "h", "yaw")


def _ground_truth(args: argparse.Namespace) -> List[List[Data]]:
    """The scored sequences (frames with boxes, box_labels, track_id[, ego_pose])."""
    if args.data == "synthetic-sequences":
        from geo3d.datasets import SyntheticSequences

        ds = SyntheticSequences(args.split, args.size, args.length, seed=args.seed)
        return [[_strip(f) for f in ds.iter_frames(i)] for i in range(len(ds))]
    from geo3d.datasets import KittiTracking

    if args.root is None:
        raise InvalidInputError("--data kitti-tracking needs --root (the folder holding training/)")
    ds = KittiTracking(args.root, "training", sequences=args.sequence or None)
    return [[_strip(f) for f in ds.iter_frames(i)][: args.length] for i in range(len(ds))]


def _strip(frame: Data) -> Data:
    """Keep what tracking needs (drop the points unless a detector needs them)."""
    return Data(**{k: frame[k] for k in ("pos", "x", "boxes", "box_labels", "track_id", "frame", "ego_pose")
                   if getattr(frame, k, None) is not None})


def _label_id(value: object, where: str) -> int:
    from geo3d.sim.classes import CLASSES

    if isinstance(value, str) and value in CLASSES:
        return CLASSES.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise FileFormatError(f"{where}: label {value!r} is neither a class name of {list(CLASSES)} nor an id >= 0")


def _frame_from_json(obj: object, where: str) -> Data:
    try:
        if isinstance(obj, dict) and "detections" in obj:
            dets = obj["detections"]
            boxes = [[d["box"][k] for k in _BOX_KEYS] if isinstance(d["box"], dict) else list(d["box"]) for d in dets]
            labels = [_label_id(d.get("label", 0), where) for d in dets]
            scores = [float(d.get("score", 1.0)) for d in dets]
        elif isinstance(obj, dict) and "boxes" in obj:
            boxes = obj["boxes"]
            labels = [_label_id(v, where) for v in obj.get("box_labels", obj.get("labels", [0] * len(boxes)))]
            scores = [float(v) for v in obj.get("box_scores", obj.get("scores", [1.0] * len(boxes)))]
        else:
            raise FileFormatError(f"{where}: expected an object with 'detections' or 'boxes'")
        out = Data(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 7),
                   box_labels=torch.tensor(labels, dtype=torch.long), box_scores=torch.tensor(scores))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(f"{where}: malformed detections ({exc})") from None
    if not (len(out.box_labels) == len(out.box_scores) == out.boxes.shape[0]):
        raise FileFormatError(f"{where}: boxes, labels and scores differ in number")
    return out


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"detections file {str(path)!r} cannot be read as JSON: {exc}") from None


def _json_detections(path: str) -> List[Data]:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.json"))
        if not files:
            raise FileFormatError(f"detections folder {path!r} holds no .json files")
        return [_frame_from_json(_read_json(f), str(f)) for f in files]
    if not p.is_file():
        raise FileFormatError(f"detections path {path!r} does not exist")
    obj = _read_json(p)
    frames = obj.get("frames") if isinstance(obj, dict) else obj
    if not isinstance(frames, list):
        raise FileFormatError(f"{path!r}: expected a list of frames or an object with 'frames'")
    return [_frame_from_json(f, f"{path} frame {i}") for i, f in enumerate(frames)]


def _load_detector(checkpoint: str) -> Callable[[Data], Data]:
    from geo3d.tasks.checkpoint import model_from_checkpoint

    model = model_from_checkpoint(checkpoint, task="detection")[0]

    def detect(frame: Data) -> Data:
        pred = model.predict(Data(pos=frame.pos, x=frame.x))[0]
        for key in ("frame", "ego_pose"):
            if getattr(frame, key, None) is not None:
                pred[key] = frame[key]
        return pred

    return detect


def _tracks_json(tracks: Data) -> list:
    return [{"track_id": int(i), "label": int(lab), "score": round(float(s), 4),
             "box": [round(float(v), 4) for v in b]}
            for b, lab, s, i in zip(tracks.boxes, tracks.box_labels, tracks.box_scores, tracks.track_id)]


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from geo3d.io.atomic import atomic_write_bytes
    from geo3d.sim.classes import OBJECT_CLASSES
    from geo3d.tasks.metrics.tracking import evaluate_tracking
    from geo3d.tasks.tracking import DetectionNoise, Tracker, TrackerConfig, noisy_detections

    if args.data is None and args.detections is None:
        raise InvalidInputError("give --data (ground truth to track or score) and/or --detections")
    if args.checkpoint and args.detections:
        raise InvalidInputError("give --checkpoint or --detections, not both")
    for name in ("size", "length"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"--{name} must be >= 1, got {getattr(args, name)}")
    config = TrackerConfig(metric=args.metric, threshold=args.threshold, max_age=args.max_age,
                           min_hits=args.min_hits, max_coast=args.max_coast,
                           score_threshold=args.score_threshold)
    truth = _ground_truth(args) if args.data else None
    if args.detections:
        dets = _json_detections(args.detections)
        if truth is not None:
            flat = [f for seq in truth for f in seq]
            if len(flat) != len(dets):
                raise InvalidInputError(f"{len(dets)} detection frames but {len(flat)} ground-truth frames")
            for d, t in zip(dets, flat):  # take the poses of the scored frames
                if getattr(t, "ego_pose", None) is not None:
                    d.ego_pose = t.ego_pose
            it = iter(dets)
            detections = [[next(it) for _ in seq] for seq in truth]
        else:
            detections = [dets]
        source = f"JSON {args.detections}"
    elif args.checkpoint:
        detect = _load_detector(args.checkpoint)
        detections = [[detect(f) for f in seq] for seq in truth]
        source = f"detector {args.checkpoint}"
    else:
        noise = DetectionNoise(center=args.noise, size=args.size_noise, yaw=args.yaw_noise,
                               flip=args.flip, dropout=args.dropout,
                               false_positives=args.false_positives)
        rng = np.random.default_rng(args.seed)
        detections = [[noisy_detections(f, noise, rng) for f in seq] for seq in truth]
        source = f"ground truth + noise {noise}"

    tracker = Tracker(config)
    results, seconds = [], 0.0
    for seq in detections:
        tracker.reset()
        t0 = time.perf_counter()
        results.append([tracker.update(f) for f in seq])
        seconds += time.perf_counter() - t0
    n_frames = sum(len(s) for s in results)
    payload = {"source": source, "tracker": repr(config), "frames_per_second": n_frames / max(seconds, 1e-9),
               "sequences": [[{"frame": i, "tracks": _tracks_json(t)} for i, t in enumerate(seq)]
                             for seq in results]}
    if truth is not None:
        metrics = evaluate_tracking(results, truth, match=args.match, class_names=list(OBJECT_CLASSES))
        payload["metrics"] = metrics
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps(payload, indent=2, default=float).encode())
    print(f"tracked {n_frames} frames in {len(results)} sequence(s) at "
          f"{payload['frames_per_second']:.0f} frames/s; wrote {out}")
    if truth is not None:
        m = payload["metrics"]
        print("  ".join(f"{k} {m[k]:.3f}" if isinstance(m[k], float) else f"{k} {m[k]}"
                        for k in ("MOTA", "MOTP", "IDF1", "IDSW", "AMOTA", "sAMOTA", "HOTA")))
    return 0


def register(sub) -> None:
    """Add ``track`` to the sub-parsers."""
    p = sub.add_parser("track", help="track 3D boxes (AB3DMOT) and score the tracks")
    p.add_argument("--data", default=None, choices=_DATA, help="ground-truth sequences")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--detections", default=None, help="folder of per-frame JSON (or one JSON file)")
    p.add_argument("--checkpoint", default=None, help="detector checkpoint (*_det) run on each frame")
    p.add_argument("--root", default=None, help="KITTI tracking root (kitti-tracking)")
    p.add_argument("--sequence", action="append", default=[], help="KITTI sequence, e.g. 0000 (repeatable)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="synthetic split")
    p.add_argument("--size", type=int, default=1, help="synthetic sequences (default: %(default)s)")
    p.add_argument("--length", type=int, default=20, help="frames per sequence (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("ground truth + noise")
    g.add_argument("--noise", type=float, default=0.1, help="centre std, metres (default: %(default)s)")
    g.add_argument("--size-noise", type=float, default=0.05, help="log-size std (default: %(default)s)")
    g.add_argument("--yaw-noise", type=float, default=0.05, help="yaw std, rad (default: %(default)s)")
    g.add_argument("--flip", type=float, default=0.05, help="probability of a backwards yaw")
    g.add_argument("--dropout", type=float, default=0.1, help="probability of a missed object")
    g.add_argument("--false-positives", type=float, default=1.0, help="mean false boxes per frame")
    t = p.add_argument_group("tracker")
    t.add_argument("--metric", default="giou_3d", choices=["iou_3d", "giou_3d", "distance"])
    t.add_argument("--threshold", type=float, default=None, help="association threshold (default per metric)")
    t.add_argument("--max-age", type=int, default=2)
    t.add_argument("--min-hits", type=int, default=3)
    t.add_argument("--max-coast", type=int, default=0)
    t.add_argument("--score-threshold", type=float, default=None)
    p.add_argument("--match", default="center", choices=["center", "iou_3d"], help="evaluation distance")
    p.set_defaults(func=_run)
