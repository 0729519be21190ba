"""Simulated detections: ground-truth boxes with noise, dropouts and false positives.

A stand-in for a detector when testing a tracker alone (as AB3DMOT's ablations and the
nuScenes tracking challenge's "GT + noise" baselines do). Pure numpy, seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError

__all__ = ["DetectionNoise", "noisy_detections"]


@dataclass(frozen=True)
class DetectionNoise:
    """How ground truth is degraded into detections.

    Args:
        center: standard deviation of the centre error per axis, metres (default 0.1).
        size: standard deviation of the log of the size factor (default 0.05).
        yaw: standard deviation of the yaw error, radians (default 0.05).
        flip: probability that a detection points backwards (yaw + pi; default 0.05).
        dropout: probability that an object is missed in a frame (default 0.1).
        false_positives: mean number of false boxes per frame (Poisson; default 1.0).
        extent: false boxes lie within this many metres of the sensor in x and y (default 40).
    """

    center: float = 0.1
    size: float = 0.05
    yaw: float = 0.05
    flip: float = 0.05
    dropout: float = 0.1
    false_positives: float = 1.0
    extent: float = 40.0

    def __post_init__(self) -> None:
        for name in ("center", "size", "yaw", "false_positives", "extent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("flip", "dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InvalidInputError(f"{name} must be a probability in [0, 1], got {value!r}")


#: Typical (l, w, h) of the false boxes per class id (car, pedestrian, cyclist).
_SIZES = np.array([[4.2, 1.8, 1.5], [0.6, 0.6, 1.75], [1.8, 0.6, 1.7]])


def noisy_detections(frame: Data, noise: DetectionNoise, rng: np.random.Generator) -> Data:
    """Detections of one frame from its ground truth ``boxes`` and ``box_labels``.

    True objects get scores uniform in ``[0.3, 1]``, false ones in ``[0, 0.6]``, so a
    score threshold trades recall for precision. False boxes take a class at random
    among 0..2, its typical size, a random yaw and a z of the ground-truth boxes' median
    (or -1 m). ``frame`` and ``ego_pose`` are copied over; the input is not modified.

    Returns:
        ``Data(boxes [K, 7] float32, box_labels [K] long, box_scores [K] float32)``.
    """
    boxes = frame.boxes.detach().cpu().double().numpy()
    labels = frame.box_labels.detach().cpu().numpy().astype(np.int64)
    keep = rng.random(len(boxes)) >= noise.dropout
    boxes, labels = boxes[keep].copy(), labels[keep]
    k = len(boxes)
    boxes[:, :3] += rng.normal(0.0, noise.center, (k, 3))
    boxes[:, 3:6] *= np.exp(rng.normal(0.0, noise.size, (k, 3)))
    boxes[:, 6] += rng.normal(0.0, noise.yaw, k) + np.where(rng.random(k) < noise.flip, math.pi, 0.0)
    scores = rng.uniform(0.3, 1.0, k)
    n_fp = int(rng.poisson(noise.false_positives))
    fp_labels = rng.integers(0, len(_SIZES), n_fp)
    fp = np.zeros((n_fp, 7))
    fp[:, :2] = rng.uniform(-noise.extent, noise.extent, (n_fp, 2))
    fp[:, 2] = np.median(frame.boxes[:, 2].double().numpy()) if len(frame.boxes) else -1.0
    fp[:, 3:6] = _SIZES[fp_labels]
    fp[:, 6] = rng.uniform(-math.pi, math.pi, n_fp)
    boxes = np.concatenate([boxes, fp])
    boxes[:, 6] = (boxes[:, 6] + math.pi) % (2 * math.pi) - math.pi
    out = Data(boxes=torch.from_numpy(boxes.astype(np.float32)),
               box_labels=torch.from_numpy(np.concatenate([labels, fp_labels]).astype(np.int64)),
               box_scores=torch.from_numpy(np.concatenate([scores, rng.uniform(0, 0.6, n_fp)]).astype(np.float32)))
    for key in ("frame", "ego_pose"):
        if getattr(frame, key, None) is not None:
            out[key] = getattr(frame, key)
    return out
