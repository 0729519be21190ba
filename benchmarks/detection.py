"""3D detection benchmark: point-backbone CenterPoint-style detectors on SyntheticLidar.

What it does, per model (``pointnet2_det`` by default; ``dgcnn_det`` with ``--models``):

* data: SyntheticLidar frames (64 beams, ~110k points; 256 train / 40 test, ``--quick``
  16 / 8), cropped to +-51.2 m and thinned to one point per 0.2 m voxel (~20k points;
  the model crops and thins again to its own grid, so this only saves time), boxes
  complete. The models (:data:`BENCH_KWARGS`) are the factories' defaults cut down to
  train on 2 shared CPU cores: width 8, a +-32 m grid of 0.5 m cells, 0.4 m voxels.
  Training frames are augmented on every access (rotation about z in +-45 deg, mirror
  y, scale 0.95..1.05).
  ``--cache DIR`` stores / reuses the prepared frames (int16 centimetres).
* training: :func:`geo3d.tasks.train` (AdamW, warm-up + cosine) for ``--minutes``
  (default 20; ``--quick`` 1) on ``--device`` (default cpu); ``--checkpoint`` skips
  training and evaluates that checkpoint.
* evaluation on the test split: KITTI-style AP R40 in 3D and BEV at 0.7 / 0.5 / 0.5 IoU
  (car / pedestrian / cyclist) and at the looser 0.5 / 0.25 / 0.25, and the nuScenes
  centre-distance mAP (:mod:`geo3d.tasks.metrics.detection`). Ground truth counted: boxes
  with at least ``--min-points`` (5) LiDAR points in the full frame and their centre on
  the grid (as nuScenes drops boxes without points; a 1-point object cannot be found).
* cost (:mod:`_measure`): params, MACs, CPU latency and peak memory of one forward on a
  full test frame (voxelization included), checkpoint size.
* sim-to-real: the trained detector on the real KITTI and nuScenes scans in
  ``--real-dir`` (no labels: the detections are reported and drawn). nuScenes LIDAR_TOP
  is x right, y forward, z up, 1.84 m above the road: its points are turned by +90 deg
  about z (x' = y, y' = -x) and raised by 0.11 m into the simulator's frame (KITTI-like,
  1.73 m); intensities are scaled to [0, 1] (nuScenes: /255).

The picture ``detection_prediction.png`` shows the first test frame from above (the
+-32 m grid): ground-truth boxes solid, the first model's detections with score >= 0.3
dashed and lighter, in the class colours. Evaluation runs on ``--device`` too; costs
and the real scans on the CPU.

Writes ``detection.json``, ``detection.md``, ``<model>.pt`` (weights + kwargs, for
``geo3d detect --checkpoint``), and ``real_<scan>.json`` / ``real_<scan>.png`` into
``--out`` (atomically). Run: ``python benchmarks/detection.py [--quick] [--cache DIR]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (COST_HEADER, add_common_args, add_device_arg, cost_cells, fmt,  # noqa: E402
                      machine_info, measure, resolve_common, resolve_device, _seconds_per_step,
                      write_outputs)
from _pictures import add_picture_arg, bev_camera, panel, picture  # noqa: E402
from _rows import cost_fields, make_row  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("pointnet2_det", "dgcnn_det")
CLASS_NAMES = ("car", "pedestrian", "cyclist")
LOOSE_IOU = {"car": 0.5, "pedestrian": 0.25, "cyclist": 0.25}
#: the benchmark's models: the factory defaults cut down to train on 2 shared CPU cores
#: (width 8, a +-32 m grid of 0.5 m cells, 0.4 m voxels)
_SMALL_GRID = dict(x_range=(-32.0, 32.0), y_range=(-32.0, 32.0), cell_size=0.5, voxel_size=0.4)
BENCH_KWARGS = {"pointnet2_det": dict(width=8, radii=(0.8, 2.0), **_SMALL_GRID),
                "dgcnn_det": dict(width=8, k=12, emb_channels=32, **_SMALL_GRID)}
TINY = {"pointnet2_det": dict(width=4, max_neighbors=4),
        "dgcnn_det": dict(width=4, emb_channels=8, k=4, depth=1)}
REAL_SCANS = {"kitti": "kitti_000008.bin", "nuscenes": "nuscenes_lidar_top.bin"}


# --------------------------------------------------------------------------- data


def prepare_frames(split: str, size: int, seed: int, start: int = 0) -> List[Data]:
    """SyntheticLidar frames ``start .. start + size - 1`` cropped to the default grid and
    voxelized (0.2 m).

    Each frame keeps ``pos``, ``x`` (intensity), ``boxes``, ``box_labels`` and
    ``box_points`` (points of the full frame inside each box, for the evaluation filter).
    """
    from geo3d.datasets import SyntheticLidar
    from geo3d.models.detection.bev import BEVGrid, crop_and_voxelize

    grid = BEVGrid()
    ds = SyntheticLidar(split, start + size, seed=seed)
    out = []
    for i in range(start, start + size):
        f = ds[i]
        keep = crop_and_voxelize(f.pos, torch.zeros(f.pos.shape[0], dtype=torch.long), grid)
        k = f.boxes.shape[0]
        inst = f.instance[f.instance >= 0]
        out.append(Data(pos=f.pos[keep], x=f.x[keep], boxes=f.boxes, box_labels=f.box_labels,
                        box_points=torch.bincount(inst, minlength=k)[:k]))
    return out


def pack(frames: List[Data]) -> Dict[str, torch.Tensor]:
    """Frames to a few compact tensors (pos in int16 centimetres, intensity in uint8)."""
    return {
        "pos_cm": torch.cat([torch.round(f.pos * 100).to(torch.int16) for f in frames]),
        "x_u8": torch.cat([torch.round(f.x.clamp(0, 1) * 255).to(torch.uint8) for f in frames]),
        "ptr": torch.tensor([0] + [f.pos.shape[0] for f in frames]).cumsum(0),
        "boxes": torch.cat([f.boxes for f in frames]),
        "box_labels": torch.cat([f.box_labels for f in frames]),
        "box_points": torch.cat([f.box_points for f in frames]),
        "box_ptr": torch.tensor([0] + [f.boxes.shape[0] for f in frames]).cumsum(0),
    }


def unpack(packed: Dict[str, torch.Tensor]) -> List[Data]:
    """Inverse of :func:`pack` (positions to the centimetre)."""
    p, b = packed["ptr"].tolist(), packed["box_ptr"].tolist()
    return [Data(pos=packed["pos_cm"][p[i]:p[i + 1]].float() / 100,
                 x=packed["x_u8"][p[i]:p[i + 1]].float() / 255,
                 boxes=packed["boxes"][b[i]:b[i + 1]], box_labels=packed["box_labels"][b[i]:b[i + 1]],
                 box_points=packed["box_points"][b[i]:b[i + 1]]) for i in range(len(p) - 1)]


def load_split(split: str, size: int, seed: int, cache: Optional[str]) -> List[Data]:
    """Prepared frames of ``split``, from ``cache/{split}_{size}.pt`` when present."""
    path = Path(cache) / f"{split}_{size}.pt" if cache else None
    if path is not None and path.is_file():
        return unpack(torch.load(path))
    frames = prepare_frames(split, size, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(pack(frames), path)
    return frames


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def transform_frame(frame: Data, angle: float, flip: bool, scale: float) -> Data:
    """Mirror y (optional), rotate by ``angle`` about z, scale; points and boxes alike."""
    pos, boxes = frame.pos.clone(), frame.boxes.clone()
    if flip:
        pos[:, 1] = -pos[:, 1]
        boxes[:, 1] = -boxes[:, 1]
        boxes[:, 6] = -boxes[:, 6]
    c, s = math.cos(angle), math.sin(angle)
    rot = pos.new_tensor([[c, -s], [s, c]])
    pos[:, :2] = pos[:, :2] @ rot.T
    boxes[:, :2] = boxes[:, :2] @ rot.T
    boxes[:, 6] = _wrap(boxes[:, 6] + angle)
    pos, boxes[:, :6] = pos * scale, boxes[:, :6] * scale
    return Data(pos=pos, x=frame.x, boxes=boxes, box_labels=frame.box_labels)


class Augmented(Dataset):
    """Frames with a fresh random rotation / mirror / scale at every access (global RNG)."""

    def __init__(self, frames: List[Data]) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Data:
        r = torch.rand(3).tolist()
        return transform_frame(self.frames[i], (r[0] - 0.5) * math.pi / 2, r[1] < 0.5,
                               0.95 + 0.1 * r[2])


def eval_targets(frames: List[Data], min_points: int, grid) -> List[Data]:
    """Ground truth counted by the evaluation: ``>= min_points`` points, centre on the grid."""
    out = []
    for f in frames:
        keep = (f.box_points >= min_points) & (f.boxes[:, 0] >= grid.x_range[0]) \
            & (f.boxes[:, 0] < grid.x_range[1]) & (f.boxes[:, 1] >= grid.y_range[0]) \
            & (f.boxes[:, 1] < grid.y_range[1])
        out.append(Data(boxes=f.boxes[keep], box_labels=f.box_labels[keep]))
    return out


# --------------------------------------------------------------------------- steps


def predict_all(model, frames: List[Data], batch_size: int, device: str) -> List[Data]:
    out = []
    for i in range(0, len(frames), batch_size):
        batch = Batch.from_data_list([Data(pos=f.pos, x=f.x) for f in frames[i:i + batch_size]])
        out.extend(model.predict(batch.to(device)))
    return out


def detection_metrics(preds: List[Data], targets: List[Data]) -> dict:
    from geo3d.tasks.metrics.detection import average_precision, center_distance_ap, mean_ap

    out = {}
    for key, thr in (("kitti", None), ("loose", LOOSE_IOU)):
        for mode in ("3d", "bev"):
            ap = average_precision(preds, targets, iou_threshold=thr, mode=mode)
            out[f"AP_{mode}_{key}"] = ap
            out[f"mAP_{mode}_{key}"] = mean_ap(ap)
    ns = center_distance_ap(preds, targets)
    out["nuscenes_mAP"], out["nuscenes_AP"] = ns["mAP"], ns["AP"]
    out["num_gt"] = {c: int(sum(int((t.box_labels == i).sum()) for t in targets))
                     for i, c in enumerate(CLASS_NAMES)}
    out["num_pred"] = int(sum(p.boxes.shape[0] for p in preds))
    return out


def fit(name: str, kwargs: dict, train_frames: List[Data], val_frames: List[Data], *,
        minutes: float, batch_size: int, lr: float, seed: int, device: str, out_dir: Path) -> dict:
    from geo3d import models
    from geo3d.tasks import TrainConfig, seed_everything, train

    seed_everything(seed)
    model = models.create(name, **kwargs)
    # size the cosine schedule to the budget from one timed step (after a warm-up step)
    step_s = _seconds_per_step(model, train_frames, batch_size, device)
    steps_per_epoch = max(1, math.ceil(len(train_frames) / batch_size))
    epochs = max(1, int(minutes * 60 / step_s / steps_per_epoch))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         max_minutes=minutes, progress=False, tensorboard=False,
                         eval_every=epochs, warmup_steps=min(50, epochs * steps_per_epoch // 10),
                         grad_clip=10.0, device=device, out_dir=str(out_dir / f"run_{name}"),
                         log_every=20)
    t0 = time.perf_counter()
    result = train(model, Augmented(train_frames), config, val_dataset=val_frames or None,
                   model_name=name, model_kwargs=kwargs)
    train_s = time.perf_counter() - t0
    return {"module": model, "model": name, "kwargs": kwargs, "train": {
        "minutes": train_s / 60, "budget_minutes": minutes, "epochs": result.epochs,
        "planned_epochs": epochs, "steps": result.steps, "stopped": result.stopped,
        "seconds_per_step_probe": step_s, "batch_size": batch_size, "lr": lr,
        "device": device, "train_frames": len(train_frames),
        "final_loss": next((r["loss"] for r in reversed(result.history)
                            if r.get("split") == "train"), None)},
        "val": result.final}


def save_model(model, name: str, kwargs: dict, path: Path, metadata: dict) -> Path:
    from geo3d.tasks import save_checkpoint

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_checkpoint(path, {"model_name": name, "model_kwargs": kwargs, "model": state,
                                  "epoch": metadata.get("epochs", 0),
                                  "step": metadata.get("steps", 0),
                                  "class_names": list(CLASS_NAMES), "metadata": metadata})


def load_model(path: str):
    from geo3d import models
    from geo3d.tasks import load_checkpoint

    state = load_checkpoint(path)
    model = models.create(state["model_name"], **state.get("model_kwargs", {}))
    model.load_state_dict(state["model"])
    return model.eval(), state


def real_scans(model, real_dir: Path, out_dir: Path) -> dict:
    """Detections on the real scans (frame conversion in the module docstring)."""
    from geo3d.cli.detect import detections_json, load_scan
    from geo3d.io.atomic import atomic_write_bytes
    from geo3d.viewers.bev import save_bev

    found = {}
    for key, fname in REAL_SCANS.items():
        path = real_dir / fname
        if not path.is_file():
            found[key] = {"status": f"missing: {path}"}
            continue
        scan = load_scan(path, model.in_channels)
        pred = model.predict(scan)[0]
        payload = detections_json(pred, str(path), scan.conversion)
        atomic_write_bytes(out_dir / f"real_{key}.json", json.dumps(payload, indent=2).encode())
        save_bev(Data(pos=scan.pos, boxes=pred.boxes), out_dir / f"real_{key}.png", extent=51.2,
                 resolution=0.1)
        counts = {c: int((pred.box_labels == i).sum()) for i, c in enumerate(CLASS_NAMES)}
        strong = {c: int(((pred.box_labels == i) & (pred.box_scores >= 0.3)).sum())
                  for i, c in enumerate(CLASS_NAMES)}
        found[key] = {"status": "ran", "points": int(scan.pos.shape[0]), "detections": counts,
                      "detections_score_ge_0.3": strong, "conversion": scan.conversion,
                      "top": payload["detections"][:5]}
    return found


def prediction_picture(frame: Data, pred: Data, title: str, min_score: float = 0.3,
                       half_extent: float = 32.0):
    """One frame from above: points grey, ground-truth boxes solid, detections with
    ``box_scores >= min_score`` dashed, in the class colours."""
    from geo3d.viewers import boxes, points

    keep = pred.box_scores >= min_score
    scene = (points(Data(pos=frame.pos), "uniform", color=(0.45, 0.45, 0.45))
             + boxes(frame.boxes, frame.box_labels, names=CLASS_NAMES)
             + boxes(pred.boxes[keep], pred.box_labels[keep], names=CLASS_NAMES, predicted=True))
    return panel(scene, f"ground truth (solid) and {title} detections, score >= {min_score:g} "
                        f"(dashed)", 640, 640, camera=bev_camera(half_extent, 640, 640))


# --------------------------------------------------------------------------- report


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = ["# geo3d detection benchmark", "",
             f"{m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}. "
             f"Data: SyntheticLidar, {s['sizes']['train']} train / {s['sizes']['test']} test "
             f"frames, grid +-32 m; ground truth with >= {s['min_points']} "
             f"points. Latency / memory: one full frame on the CPU (median of {s['repeats']}).",
             "", "## Accuracy (test split, AP R40 in %)", "",
             "| model | mAP 3D | mAP BEV | mAP 3D loose | mAP BEV loose | nuScenes mAP | "
             "train min | device | steps |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in result["rows"]:
        t, tr = r["test"], r["train"]
        lines.append(f"| {r['model']} | {fmt(t['mAP_3d_kitti'], 1, 100)} | "
                     f"{fmt(t['mAP_bev_kitti'], 1, 100)} | {fmt(t['mAP_3d_loose'], 1, 100)} | "
                     f"{fmt(t['mAP_bev_loose'], 1, 100)} | {fmt(t['nuscenes_mAP'], 1, 100)} | "
                     f"{fmt(tr.get('minutes'), 1)} | {tr.get('device', '-')} | "
                     f"{tr.get('steps', '-')} |")
    lines += ["", "Strict IoU 0.7 / 0.5 / 0.5, loose 0.5 / 0.25 / 0.25 (car / pedestrian / "
              "cyclist). Per class:", "",
              "| model | class | GT boxes | AP 3D | AP BEV | AP 3D loose | AP BEV loose | "
              "nuScenes AP |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        t = r["test"]
        for c in CLASS_NAMES:
            lines.append(f"| {r['model']} | {c} | {t['num_gt'][c]} | "
                         f"{fmt(t['AP_3d_kitti'][c], 1, 100)} | {fmt(t['AP_bev_kitti'][c], 1, 100)} | "
                         f"{fmt(t['AP_3d_loose'][c], 1, 100)} | {fmt(t['AP_bev_loose'][c], 1, 100)} | "
                         f"{fmt(t['nuscenes_AP'][c], 1, 100)} |")
    lines += ["", "## Cost", "", f"| model | points in | {COST_HEADER} |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['cost_points']:,} | {cost_cells(r['cost'])} |")
    lines += ["", "## Sim-to-real (trained on SyntheticLidar only; no labels)", ""]
    for r in result["rows"]:
        for key, v in r.get("real", {}).items():
            if v.get("status") != "ran":
                lines.append(f"- {r['model']} on {key}: {v.get('status')}")
                continue
            lines.append(f"- {r['model']} on {key} ({v['points']:,} points): detections "
                         f"{v['detections']} (score >= 0.3: {v['detections_score_ge_0.3']}); "
                         f"{v['conversion']}")
    return "\n".join(lines) + "\n"


def result_rows(result: dict) -> List[dict]:
    """Suite rows (:class:`geo3d.bench.results.ResultRow` dicts): KITTI-style 3D mAP (AP
    R40, strict IoU) and cost of every evaluated model; BEV, loose-IoU and nuScenes mAP in
    ``metrics``."""
    rows = []
    for r in result["rows"]:
        if "test" not in r:
            continue
        t = r["test"]
        rows.append(make_row(
            "detection", "SyntheticLidar 3D detection", r["model"], "mAP_3d", t["mAP_3d_kitti"],
            **cost_fields(r.get("cost")),
            metrics={"nuscenes_mAP": t["nuscenes_mAP"], "mAP_bev": t["mAP_bev_kitti"],
                     "mAP_3d_loose": t["mAP_3d_loose"], "mAP_bev_loose": t["mAP_bev_loose"],
                     "train_minutes": r["train"].get("minutes"),
                     "train_steps": r["train"].get("steps")},
            notes=f"AP R40, IoU 0.7/0.5/0.5 (car/pedestrian/cyclist); cost on a full frame "
                  f"of {r.get('cost_points', 0):,} points"))
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "out/bench/detection")
    add_device_arg(ap)
    add_picture_arg(ap)
    ap.add_argument("--cache", default=None, help="folder of prepared frames (read / written)")
    ap.add_argument("--checkpoint", default=None, help="evaluate this checkpoint, no training")
    ap.add_argument("--min-points", type=int, default=5,
                    help="ground-truth boxes need this many LiDAR points (default 5)")
    ap.add_argument("--real-dir", default=str(ROOT.parent / "shared" / "data" / "real"),
                    help="folder with kitti_000008.bin and nuscenes_lidar_top.bin")
    ap.add_argument("--skip-eval", action="store_true", help="train and save only")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's); 1 is several times faster on a "
                         "CPU shared with other jobs (measured 2 s vs 12-20 s per step)")
    args = ap.parse_args(argv)
    device = resolve_device(ap, args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    models_, minutes, repeats = resolve_common(ap, args, MODELS)
    if args.models is None:
        models_ = ["pointnet2_det"]
    q = args.quick
    sizes = dict(train=args.train_size or (16 if q else 256), val=args.val_size or 0,
                 test=args.test_size or (8 if q else 40))
    batch_size = args.batch_size or (2 if q else 4)
    settings = dict(quick=q, minutes=minutes, seed=args.seed, repeats=repeats, models=models_,
                    sizes=sizes, batch_size=batch_size, lr=args.lr, device=device,
                    min_points=args.min_points, checkpoint=args.checkpoint, tiny=args.tiny)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine_info(), "device": device, "settings": settings, "rows": [],
              "pictures": []}
    shown = None  # (first test frame, its detections, model name) for the picture
    t_start = time.perf_counter()
    t0 = time.perf_counter()
    train_frames = [] if args.checkpoint else load_split("train", sizes["train"], args.seed, args.cache)
    val_frames = load_split("val", sizes["val"], args.seed, args.cache) if sizes["val"] else []
    test_frames = [] if args.skip_eval else load_split("test", sizes["test"], args.seed, args.cache)
    print(f"data ready in {time.perf_counter() - t0:.1f} s", flush=True)
    for name in models_:
        if args.checkpoint:
            model, state = load_model(args.checkpoint)
            name, kwargs = state["model_name"], state.get("model_kwargs", {})
            row = {"model": name, "kwargs": kwargs, "train": dict(state.get("metadata", {})),
                   "val": None}
        else:
            kwargs = dict(TINY[name]) if args.tiny else dict(BENCH_KWARGS[name])
            print(f"{name}: training {minutes} min on {len(train_frames)} frames "
                  f"({device})", flush=True)
            row = fit(name, kwargs, train_frames, val_frames, minutes=minutes,
                      batch_size=batch_size, lr=args.lr, seed=args.seed, device=device,
                      out_dir=out_dir)
            model = row.pop("module")
            ckpt = save_model(model, name, kwargs, out_dir / f"{name}.pt", row["train"])
            row["checkpoint"] = str(ckpt)
            print(f"{name}: {row['train']['steps']} steps in {row['train']['minutes']:.1f} min, "
                  f"checkpoint {ckpt}", flush=True)
        if args.skip_eval:
            result["rows"].append(row)
            continue
        model = model.to(device).eval()
        grid = model.grid
        preds = [p.cpu() for p in predict_all(model, test_frames, batch_size, device)]
        model = model.cpu()  # the cost is CPU cost
        if shown is None and test_frames:
            shown = (test_frames[0], preds[0], name)
        row["test"] = detection_metrics(preds, eval_targets(test_frames, args.min_points, grid))
        print(f"{name}: test mAP 3D {row['test']['mAP_3d_kitti']:.3f}, BEV "
              f"{row['test']['mAP_bev_kitti']:.3f}, nuScenes {row['test']['nuscenes_mAP']:.3f}",
              flush=True)
        from geo3d.datasets import SyntheticLidar

        full = SyntheticLidar("test", 1, seed=args.seed)[0]
        example = Data(pos=full.pos, x=full.x if model.in_channels else None)
        row["cost_points"] = int(full.pos.shape[0])
        row["cost"] = measure(model, example, spec=(name, kwargs), repeats=repeats,
                              memory=not args.no_memory)
        row["real"] = real_scans(model, Path(args.real_dir), out_dir)
        result["rows"].append(row)
    if shown is not None:
        written = picture(args.out, "detection_prediction.png",
                          lambda: prediction_picture(*shown), enabled=not args.no_pictures)
        result["pictures"] = [written] if written else []
    result["wall_minutes"] = (time.perf_counter() - t_start) / 60
    if args.skip_eval:
        (out_dir / "train_only.json").write_text(json.dumps(result, indent=2, default=str))
        return 0
    result["results"] = result_rows(result)
    md = markdown(result)
    print(md)
    write_outputs(args.out, "detection", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
