"""Simulate a LiDAR sequence and write it to disk: one PLY per frame and a JSON summary.

The first frame is also drawn from above as ``bev_000.png``. Each PLY holds positions, intensity, a colour per semantic class (so any viewer shows the
labels), and the ``label`` and ``instance`` of every point. ``summary.json`` lists, per
frame, the point count, the points per class, the boxes with their labels and track ids,
and the ego pose. Every file is written atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch_geometric.data import Data
from tqdm.auto import tqdm

from geo3d.errors import InvalidInputError
from geo3d.io import atomic_write_bytes, write_point_cloud
from geo3d.sim.classes import CLASS_COLORS, CLASSES
from geo3d.sim.sequence import SimConfig

__all__ = ["export_sequence", "frame_to_ply_data"]


def frame_to_ply_data(frame: Data) -> Data:
    """A copy of ``frame`` whose ``x`` holds intensity, class colours, label and instance."""
    colors = torch.tensor(CLASS_COLORS, dtype=torch.float32)[frame.y]
    x = torch.cat([frame.x[:, :1], colors, frame.y[:, None].float(),
                   frame.instance[:, None].float()], dim=1)
    names = ["intensity", "red", "green", "blue", "label", "instance"]
    return Data(pos=frame.pos, x=x, x_names=names)


def _frame_summary(frame: Data, ply_name: str) -> dict:
    counts = torch.bincount(frame.y, minlength=len(CLASSES)).tolist()
    return {
        "frame": int(frame.frame),
        "file": ply_name,
        "num_points": int(frame.pos.shape[0]),
        "points_per_class": dict(zip(CLASSES, counts)),
        "boxes": [
            {"track_id": int(t), "label": CLASSES[int(c)],
             "box": [round(float(v), 4) for v in b]}
            for b, c, t in zip(frame.boxes, frame.box_labels, frame.track_id)
        ],
        "ego_pose": np.round(frame.ego_pose[0].numpy().astype(float), 5).tolist(),
    }


def export_sequence(
    out_dir: Union[str, Path],
    frames: int = 10,
    seed: int = 0,
    split: str = "test",
    config: Optional[SimConfig] = None,
    progress: bool = True,
) -> dict:
    """Simulate one sequence of ``SyntheticSequences(split, 1, frames, seed)`` and save it.

    Args:
        out_dir: folder to create or fill (``frame_000.ply`` ... and ``summary.json``).
        frames: number of frames, >= 1 (default 10, one second at 10 Hz).
        seed: base seed (default 0).
        split: ``"train"``, ``"val"`` or ``"test"`` (default ``"test"``).
        config: simulation settings (default ``SimConfig()``).
        progress: show a progress bar (default True).

    Returns:
        The summary written to ``summary.json``.
    """
    from geo3d.datasets.synthetic_sequences import SyntheticSequences

    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InvalidInputError(f"frames must be an integer >= 1, got {frames!r}")
    dataset = SyntheticSequences(split, size=1, length=frames, seed=seed, config=config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summaries = []
    stream = dataset.iter_frames(0)
    for frame in tqdm(stream, total=frames, desc="simulate", unit="frame", disable=not progress):
        name = f"frame_{int(frame.frame):03d}.ply"
        write_point_cloud(frame_to_ply_data(frame), out / name)
        summaries.append(_frame_summary(frame, name))
        if frame.frame == 0:
            from geo3d.viewers.bev import save_bev

            save_bev(frame, out / "bev_000.png")
    seconds = time.perf_counter() - start
    summary = {
        "dataset": repr(dataset),
        "classes": list(CLASSES),
        "box_format": "x, y, z (centre), l, w, h, yaw; metres and radians, LiDAR frame",
        "num_frames": frames,
        "picture": "bev_000.png",
        "total_points": sum(f["num_points"] for f in summaries),
        "seconds": round(seconds, 3),
        "seconds_per_frame": round(seconds / frames, 4),
        "frames": summaries,
    }
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary
