"""``geo3d detect SCAN --out detections.json [--checkpoint CKPT]``: 3D boxes in one scan.

The detector is a checkpoint written by ``benchmarks/detection.py`` (or ``geo3d train``):
``model_name`` + ``model_kwargs`` + weights of a registered ``*_det`` model. Without
``--checkpoint``, the model zoo's ``pointnet2_det`` (:data:`SHIPPED_MODEL`,
``create(..., pretrained=True)``) is used when the package ships one.

Frames: the detectors are trained on the simulator's LiDAR frame (x forward, y left,
z up, sensor 1.73 m above the road, as KITTI). A nuScenes LIDAR_TOP scan (x right,
y forward, z up, 1.84 m) is turned by +90 deg about z and raised by 0.11 m before
detection, and its intensities (0..255) scaled to [0, 1]; ``--no-convert`` skips this.
The boxes written are in the scan's own frame.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Optional

import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError

SHIPPED_MODEL = "pointnet2_det"
NUSCENES_HEIGHT_OFFSET = 1.84 - 1.73  # LIDAR_TOP height minus the simulator's (= KITTI's)


def load_scan(path, in_channels: int, format: Optional[str] = None,
              convert: bool = True) -> Data:
    """Read a scan into the detector's frame; ``data.conversion`` says what was done."""
    from geo3d.io import read_point_cloud
    from geo3d.io._formats import point_cloud_format

    fmt = point_cloud_format(path, format)
    data = read_point_cloud(path, format=format)
    pos, x = data.pos, getattr(data, "x", None)
    names = list(getattr(data, "x_names", None) or [])
    intensity = x[:, names.index("intensity"):names.index("intensity") + 1] \
        if x is not None and "intensity" in names else None
    conversion = "none (KITTI-like frame assumed)"
    if fmt == "nuscenes" and convert:
        pos = torch.stack([pos[:, 1], -pos[:, 0], pos[:, 2] + NUSCENES_HEIGHT_OFFSET], dim=1)
        if intensity is not None:
            intensity = intensity / 255.0
        conversion = (f"nuScenes LIDAR_TOP -> detector frame: x'=y, y'=-x, "
                      f"z'=z+{NUSCENES_HEIGHT_OFFSET:.2f}, intensity/255")
    out = Data(pos=pos.float())
    if in_channels:
        if in_channels != 1 or intensity is None:
            raise InvalidInputError(f"the detector needs {in_channels} point feature(s) "
                                    f"(intensity), but {str(path)!r} has {names or 'none'}")
        out.x = intensity.clamp(0, 1).float()
    out.conversion, out.scan_format = conversion, fmt
    return out


def to_scan_frame(boxes: torch.Tensor, conversion: str) -> torch.Tensor:
    """Boxes from the detector's frame back to the scan's (inverse of :func:`load_scan`)."""
    if not conversion.startswith("nuScenes"):
        return boxes
    out = boxes.clone()
    out[:, 0], out[:, 1] = -boxes[:, 1], boxes[:, 0]
    out[:, 2] = boxes[:, 2] - NUSCENES_HEIGHT_OFFSET
    out[:, 6] = torch.remainder(boxes[:, 6] + math.pi / 2 + math.pi, 2 * math.pi) - math.pi
    return out


def detections_json(pred: Data, scan: str, conversion: str) -> dict:
    """The JSON written by ``geo3d detect``: one entry per box, by descending score."""
    from geo3d.sim.classes import CLASSES

    boxes = to_scan_frame(pred.boxes, conversion)
    keys = ("x", "y", "z", "l", "w", "h", "yaw")
    dets = [{"label": CLASSES[int(lab)], "score": round(float(s), 4),
             "box": {k: round(float(v), 4) for k, v in zip(keys, b.tolist())}}
            for b, lab, s in zip(boxes, pred.box_labels, pred.box_scores)]
    return {"scan": scan, "frame": "the scan's own coordinates (metres, yaw about +z)",
            "conversion": conversion, "box_format": list(keys), "detections": dets}


def _shipped() -> list:
    from geo3d.models import list_pretrained

    return list_pretrained()


def _load_detector(checkpoint: Optional[str]):
    """``(model, source)`` from ``checkpoint``, or the zoo's detector when it is None."""
    from geo3d import models

    if checkpoint is None:
        if SHIPPED_MODEL not in _shipped():
            raise InvalidInputError(
                f"no --checkpoint given and no pretrained detector is shipped ({SHIPPED_MODEL} "
                "is not in the model zoo); train one with benchmarks/detection.py and pass "
                "--checkpoint out/bench/detection/pointnet2_det.pt")
        return models.create(SHIPPED_MODEL, pretrained=True).eval(), f"zoo:{SHIPPED_MODEL}"
    from geo3d.tasks.checkpoint import model_from_checkpoint

    return model_from_checkpoint(checkpoint, task="detection")[0], checkpoint


def _run(args: argparse.Namespace) -> int:
    from geo3d.io.atomic import atomic_write_bytes

    model, source = _load_detector(args.checkpoint)
    if args.score_threshold is not None:
        if not 0 <= args.score_threshold <= 1:
            raise InvalidInputError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
        model.score_threshold = args.score_threshold
    scan = load_scan(args.scan, model.in_channels, args.format, convert=not args.no_convert)
    pred = model.predict(scan)[0]
    payload = detections_json(pred, str(args.scan), scan.conversion)
    payload["checkpoint"] = source
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps(payload, indent=2).encode())
    counts = {}
    for d in payload["detections"]:
        counts[d["label"]] = counts.get(d["label"], 0) + 1
    summary = ", ".join(f"{n} {c}" for c, n in counts.items()) or "nothing"
    print(f"{args.scan}: {summary} (score >= {model.score_threshold:g}); wrote {out}")
    return 0


def register(sub) -> None:
    """Add ``detect`` to the sub-parsers."""
    p = sub.add_parser("detect", help="detect cars, pedestrians and cyclists in a LiDAR scan")
    p.add_argument("scan", help="point cloud (KITTI .bin, nuScenes .pcd.bin, .ply, .pcd...)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--checkpoint", default=None,
                   help="detector checkpoint (default: the shipped one, if any)")
    p.add_argument("--format", default=None, help="point-cloud format (default: from the name)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="keep boxes scoring at least this (default: the model's, 0.1)")
    p.add_argument("--no-convert", action="store_true",
                   help="do not convert nuScenes scans into the detector's frame")
    p.set_defaults(func=_run)
