"""How well and how fast does geo3d's AB3DMOT tracker follow objects on 2 CPU cores?

On ``SyntheticSequences`` (test split; boxes with persistent ``track_id`` and the ego
pose of every frame):

1. Tracker alone: detections are the ground-truth boxes plus noise, dropouts, flipped
   headings and false positives (:class:`geo3d.tasks.tracking.DetectionNoise`, the same
   detections for every setting), tracked with each association metric (3D IoU, 3D GIoU,
   centre distance).
2. End to end: a detector checkpoint (``--checkpoint``, a ``*_det`` model, e.g. from
   ``benchmarks/detection.py``) detects the boxes in every simulated scan; skipped with a
   note when no checkpoint is given.

Frames: boxes are in each frame's sensor frame; the tracker moves them into the
sequence's world frame with ``ego_pose`` (``TrackerConfig.use_ego_pose``) and reports
them back in the sensor frame, where they are scored against the ground truth. The
table also shows the tracker without ego motion compensation (``use_ego_pose=False``).

Metrics (:func:`geo3d.tasks.metrics.tracking.evaluate_tracking`, centre distance <= 2 m):
MOTA, MOTP (metres), IDF1, IDSW, FRAG, AMOTA and sAMOTA (AB3DMOT, 40 recall points;
class mean), HOTA, DetA, AssA (3D IoU). Speed: frames per second of ``Tracker.update``
alone (detections ready), wall time and process CPU time (CPU time is what the tracker
costs when the machine is shared), on the benchmark's scenes and on a dense scene of
``--dense-objects`` (default 40) moving boxes; the issue's target is >= 200 frames/s.

Everything here runs on the CPU (the tracker is numpy; the ``--checkpoint`` detector is
loaded by ``geo3d track``'s loader, on the CPU): ``--device`` is accepted and recorded.
The picture ``tracking_prediction.gif`` (320 x 240, up to 15 frames) follows the first
test sequence from above: ground-truth boxes solid, the tracker's boxes (first
association metric, ground truth + noise) dashed, and the tracker's trails in its track
ids' colours.

Writes ``tracking.json`` and ``tracking.md`` to ``--out`` (atomically) and prints the
tables. Run: ``python benchmarks/tracking.py [--quick] [--checkpoint CKPT]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch_geometric.data import Data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_device_arg, fmt, machine_info, resolve_device, write_outputs  # noqa: E402
from _pictures import add_picture_arg, bev_camera, panel, picture  # noqa: E402
from _rows import make_row  # noqa: E402

METRICS = ("iou_3d", "giou_3d", "distance")
TARGET_FPS = 200.0
KEYS = ("MOTA", "MOTP", "IDF1", "IDSW", "FRAG", "AMOTA", "sAMOTA", "HOTA", "DetA", "AssA")


def ground_truth(size: int, length: int, seed: int, keep_points: bool,
                 keep_first: int = 0) -> List[List[Data]]:
    """Simulated test sequences, points dropped unless a detector needs them (or, for the
    picture, ``pos`` of the first ``keep_first`` frames of sequence 0)."""
    from geo3d.datasets import SyntheticSequences

    keys = ["boxes", "box_labels", "track_id", "frame", "ego_pose"] + (["pos", "x"] if keep_points else [])
    ds = SyntheticSequences("test", size, length, seed=seed)
    out = []
    for i in range(size):
        seq = []
        for j, f in enumerate(ds.iter_frames(i)):
            extra = ["pos"] if not keep_points and i == 0 and j < keep_first else []
            seq.append(Data(**{k: f[k] for k in keys + extra}))
        out.append(seq)
    return out


def tracking_picture(truth: List[Data], tracks_: List[Data], title: str, size=(320, 240)):
    """GIF frames: each frame from above (+-30 m), points grey, ground-truth boxes solid,
    tracker boxes dashed, the tracker's trails up to that frame."""
    from geo3d.viewers import boxes, points, tracks

    width, height = size[0], size[1] - 20  # 20: the title strip
    camera = bev_camera(30.0, width, height)
    history, images = [], []
    for t, (gt, trk) in enumerate(zip(truth, tracks_)):
        history.append(Data(boxes=trk.boxes, track_id=trk.track_id, ego_pose=gt.ego_pose))
        scene = (points(Data(pos=gt.pos), "uniform", color=(0.4, 0.4, 0.4), point_size=1.0)
                 + boxes(gt.boxes, gt.box_labels, line_width=1.0)
                 + boxes(trk.boxes, trk.box_labels, predicted=True, line_width=1.0)
                 + tracks(history, line_width=1.0))
        images.append(panel(scene, f"{title}, frame {t}", width, height, camera=camera,
                            legend=False))
    return images


def run_tracker(detections: List[List[Data]], **config) -> tuple:
    """Track every sequence; returns (tracks, wall seconds, CPU seconds) of the updates."""
    from geo3d.tasks.tracking import Tracker

    tracker, out, wall, cpu = Tracker(**config), [], 0.0, 0.0
    for seq in detections:
        tracker.reset()
        w0, c0 = time.perf_counter(), time.process_time()
        out.append([tracker.update(f) for f in seq])
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return out, wall, cpu


def dense_scene(num_objects: int, frames: int, seed: int) -> List[Data]:
    """Boxes of ``num_objects`` cars/pedestrians/cyclists moving straight, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, num_objects)
    sizes = np.array([[4.2, 1.8, 1.5], [0.6, 0.6, 1.75], [1.8, 0.6, 1.7]])[labels]
    start = rng.uniform(-40, 40, (num_objects, 2))
    yaw = rng.uniform(-np.pi, np.pi, num_objects)
    speed = np.array([1.0, 0.15, 0.5])[labels]
    step = np.stack([np.cos(yaw), np.sin(yaw)], 1) * speed[:, None]
    out = []
    for f in range(frames):
        b = np.zeros((num_objects, 7))
        b[:, :2] = start + f * step + rng.normal(0, 0.1, (num_objects, 2))
        b[:, 2] = -0.9
        b[:, 3:6] = sizes
        b[:, 6] = yaw + rng.normal(0, 0.05, num_objects)
        out.append(Data(boxes=torch.tensor(b, dtype=torch.float32), box_labels=torch.from_numpy(labels),
                        box_scores=torch.from_numpy(rng.uniform(0.3, 1, num_objects).astype(np.float32))))
    return out


def row(name: str, tracks, truth, wall: float, cpu: float, recall_points: int) -> dict:
    from geo3d.sim.classes import OBJECT_CLASSES
    from geo3d.tasks.metrics.tracking import evaluate_tracking

    n = sum(len(s) for s in tracks)
    m = evaluate_tracking(tracks, truth, class_names=list(OBJECT_CLASSES), num_recall_points=recall_points)
    return {"setting": name, "metrics": m, "frames": n, "fps_wall": n / wall, "fps_cpu": n / cpu,
            "mean_boxes": float(np.mean([len(f.boxes) for s in truth for f in s]))}


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = ["# geo3d tracking benchmark", "",
             f"{m['cores']} cores, torch {m['torch']}; {s['sequences']} SyntheticSequences test "
             f"sequences x {s['length']} frames (seed {s['seed']}); detections = ground truth + "
             f"noise {s['noise']}; metrics with centre distance <= 2 m, AMOTA with "
             f"{s['recall_points']} recall points. fps = Tracker.update calls per second "
             "(wall / process CPU time).", "",
             "## 1. Tracker alone (ground truth + noise)", "",
             "| setting | " + " | ".join(KEYS) + " | fps wall | fps CPU |",
             "| --- |" + " ---: |" * (len(KEYS) + 2)]
    for r in result["gt_noise"]:
        cells = [fmt(r["metrics"][k], 0 if k in ("IDSW", "FRAG") else 3) for k in KEYS]
        lines.append(f"| {r['setting']} | " + " | ".join(cells)
                     + f" | {fmt(r['fps_wall'], 0)} | {fmt(r['fps_cpu'], 0)} |")
    d = result["dense"]
    lines += ["", f"## Speed on a dense scene ({d['objects']} moving boxes, {d['frames']} frames)", "",
              "| metric | fps wall | fps CPU |", "| --- | ---: | ---: |"]
    for metric, v in d["fps"].items():
        lines.append(f"| {metric} | {fmt(v['wall'], 0)} | {fmt(v['cpu'], 0)} |")
    best = min(min(v["wall"], v["cpu"]) for v in d["fps"].values())
    lines += ["", f"Target >= {TARGET_FPS:.0f} frames/s: slowest metric {fmt(best, 0)} (the lower "
              f"of wall and CPU): **{'met' if best >= TARGET_FPS else 'NOT met'}** on this run "
              f"(load average at the start {result['load_average']})."]
    lines += ["", "## 2. End to end (detector + tracker)", ""]
    e2e = result["end_to_end"]
    if e2e.get("status") == "ran":
        lines += ["| setting | " + " | ".join(KEYS) + " |", "| --- |" + " ---: |" * len(KEYS)]
        for r in e2e["rows"]:
            lines.append(f"| {r['setting']} | " + " | ".join(
                fmt(r["metrics"][k], 0 if k in ("IDSW", "FRAG") else 3) for k in KEYS) + " |")
    else:
        lines.append(e2e["status"])
    return "\n".join(lines) + "\n"


def result_rows(result: dict) -> List[dict]:
    """Suite rows (:class:`geo3d.bench.results.ResultRow` dicts): MOTA of the tracker per
    association metric (variant), ground truth + noise and, when run, end to end; cost:
    ``latency_ms`` = wall ms per frame of ``Tracker.update`` (1000 / fps wall)."""
    groups = [("tracking, ground truth + noise detections", result["gt_noise"])]
    if result.get("end_to_end", {}).get("status") == "ran":
        groups.append(("tracking, detector + tracker", result["end_to_end"]["rows"]))
    rows = []
    for task, group in groups:
        for r in group:
            m = r["metrics"]
            rows.append(make_row(
                "tracking", task, "AB3DMOT", "MOTA", m["MOTA"], variant=r["setting"],
                latency_ms=1000.0 / r["fps_wall"] if r["fps_wall"] else None,
                metrics={**{k: m.get(k) for k in KEYS if k != "MOTA"},
                         "cpu_ms_per_frame": 1000.0 / r["fps_cpu"] if r["fps_cpu"] else None,
                         "fps_wall": r["fps_wall"], "fps_cpu": r["fps_cpu"]},
                notes=f"{r['frames']} frames, {r['mean_boxes']:.1f} boxes per frame"))
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    import os

    from geo3d.tasks.tracking import DetectionNoise, noisy_detections

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/bench/tracking", help="output folder (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="2 short sequences, 10 recall points")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sequences", type=int, default=None, help="sequences (default 6; --quick 2)")
    ap.add_argument("--length", type=int, default=None, help="frames each (default 40; --quick 15)")
    ap.add_argument("--metrics", nargs="+", choices=METRICS, default=list(METRICS))
    ap.add_argument("--recall-points", type=int, default=None, help="AMOTA points (default 40; --quick 10)")
    ap.add_argument("--dense-objects", type=int, default=40)
    ap.add_argument("--checkpoint", default=None, help="detector checkpoint for the end-to-end run")
    add_device_arg(ap, cpu_only="the tracker (numpy) and the --checkpoint detector")
    add_picture_arg(ap)
    args = ap.parse_args(argv)
    device = resolve_device(ap, args)
    size = args.sequences or (2 if args.quick else 6)
    length = args.length or (15 if args.quick else 40)
    points = args.recall_points or (10 if args.quick else 40)
    noise = DetectionNoise()
    result = {"machine": machine_info(), "device": device,
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "settings": {"quick": args.quick, "seed": args.seed, "sequences": size, "length": length,
                           "recall_points": points, "noise": repr(noise), "metrics": args.metrics}}
    t0 = time.perf_counter()
    shown = 0 if args.no_pictures else 15  # frames of the picture
    truth = ground_truth(size, length, args.seed, keep_points=args.checkpoint is not None,
                         keep_first=shown)
    print(f"simulated {size} x {length} frames in {time.perf_counter() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(args.seed)
    dets = [[noisy_detections(f, noise, rng) for f in seq] for seq in truth]
    rows = []
    for metric in args.metrics:
        for ego in (True, False) if metric == args.metrics[0] else (True,):
            name = metric + ("" if ego else ", no ego motion")
            tracks, wall, cpu = run_tracker(dets, metric=metric, use_ego_pose=ego)
            rows.append(row(name, tracks, truth, wall, cpu, points))
            if not rows[1:]:  # the picture: the first setting, sequence 0
                picture_tracks = (tracks[0][:shown], f"AB3DMOT {name}")
            r = rows[-1]
            print(f"[gt+noise] {name}: MOTA {r['metrics']['MOTA']:.3f} IDF1 {r['metrics']['IDF1']:.3f} "
                  f"HOTA {r['metrics']['HOTA']:.3f} AMOTA {r['metrics']['AMOTA']:.3f} "
                  f"{r['fps_wall']:.0f} fps wall", flush=True)
    result["gt_noise"] = rows
    dense = dense_scene(args.dense_objects, 100 if args.quick else 300, args.seed)
    fps = {}
    for metric in args.metrics:
        _, wall, cpu = run_tracker([dense], metric=metric)
        fps[metric] = {"wall": len(dense) / wall, "cpu": len(dense) / cpu}
        print(f"[dense] {metric}: {fps[metric]['wall']:.0f} fps wall, {fps[metric]['cpu']:.0f} fps CPU", flush=True)
    result["dense"] = {"objects": args.dense_objects, "frames": len(dense), "fps": fps}
    if args.checkpoint is None:
        result["end_to_end"] = {"status": "skipped: no --checkpoint given (train a detector with "
                                          "benchmarks/detection.py and pass its checkpoint)"}
    else:
        from geo3d.cli.track import _load_detector

        detect = _load_detector(args.checkpoint)
        det = [[detect(f) for f in seq] for seq in truth]
        e2e = []
        for metric in args.metrics:
            tracks, wall, cpu = run_tracker(det, metric=metric)
            e2e.append(row(metric, tracks, truth, wall, cpu, points))
        result["end_to_end"] = {"status": "ran", "checkpoint": args.checkpoint, "rows": e2e}
    written = picture(args.out, "tracking_prediction.gif",
                      lambda: tracking_picture(truth[0][:shown], *picture_tracks),
                      enabled=shown > 0 and bool(rows), fps=4.0)
    result["pictures"] = [written] if written else []
    result["wall_minutes"] = (time.perf_counter() - t0) / 60
    result["results"] = result_rows(result)
    md = markdown(result)
    print(md)
    write_outputs(args.out, "tracking", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
