"""AB3DMOT-style multi-object tracker of 3D boxes.

Weng, Wang, Held and Kitani, "3D Multi-Object Tracking: A Baseline and New Evaluation
Metrics", IROS 2020: each frame, every track is predicted by a constant-velocity Kalman
filter (:mod:`geo3d.tasks.tracking.kalman`), tracks and detections of the same class are
paired by the Hungarian algorithm on 3D IoU, 3D GIoU or centre distance
(:mod:`geo3d.tasks.tracking.association`), matched tracks are corrected, unmatched
detections start new tracks (births), tracks unmatched for more than ``max_age`` frames
are dropped (deaths), and a track is reported once it has ``min_hits`` matched detections.
Our own numpy code: AB3DMOT's reference runs one filterpy filter per object in Python.

Coordinate frames: boxes of a moving sensor are in the sensor frame of their own frame,
where static objects appear to move. When a frame carries ``ego_pose`` (``[1, 4, 4]`` or
``[4, 4]`` world-from-sensor, as :class:`geo3d.datasets.SyntheticSequences` frames do) and
``TrackerConfig.use_ego_pose`` is on (the default), detections are moved into the world
frame for prediction and association, and the returned tracks are moved back into that
frame's sensor frame. Boxes stay upright: centres get the full rigid transform and yaw
gets the pose's heading (``atan2(R[1, 0], R[0, 0])``); pitch and roll of the ego vehicle
only move the centres. Without ``ego_pose`` the boxes are tracked in the given frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_finite, check_index, check_points
from geo3d.tasks.tracking.association import (DEFAULT_THRESHOLDS, METRICS, _affinity_np,
                                              hungarian_match)
from geo3d.tasks.tracking.kalman import (KalmanConfig, KalmanState, kf_init, kf_predict,
                                         kf_update, wrap_angle)

__all__ = ["TrackerConfig", "Tracker", "boxes_to_world", "boxes_from_world"]

_MIN_SIZE = 1e-3  # sizes of reported boxes are kept >= this (metres)


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of :class:`Tracker` (AB3DMOT's defaults for KITTI).

    Args:
        metric: association affinity, ``"iou_3d"``, ``"giou_3d"`` (default) or
            ``"distance"`` (box centres).
        threshold: a track and a detection may match when their affinity is above it; for
            ``"distance"`` it is the largest centre distance in metres. Default None: 0.01
            for iou_3d, -0.2 for giou_3d, 2.0 m for distance.
        max_age: a track unmatched for more than this many consecutive frames is deleted
            (default 2).
        min_hits: a track is reported once it has been matched this many times, counting
            its birth (default 3). As in AB3DMOT, during the first ``min_hits`` frames every
            track is reported.
        max_coast: also report a confirmed track for up to this many frames after its last
            match, at its predicted box (default 0: only tracks matched in this frame).
        score_threshold: detections scoring below this are ignored (default None: keep all).
        use_ego_pose: track in the world frame when frames carry ``ego_pose`` (default True).
        kalman: noise model of the filter (default ``KalmanConfig()``, AB3DMOT's).
    """

    metric: str = "giou_3d"
    threshold: Optional[float] = None
    max_age: int = 2
    min_hits: int = 3
    max_coast: int = 0
    score_threshold: Optional[float] = None
    use_ego_pose: bool = True
    kalman: KalmanConfig = field(default_factory=KalmanConfig)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidInputError(f"metric must be one of {list(METRICS)}, got {self.metric!r}")
        for name in ("threshold", "score_threshold"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise InvalidInputError(f"{name} must be a finite number or None, got {value!r}")
        if self.metric == "distance" and self.threshold is not None and self.threshold <= 0:
            raise InvalidInputError(f"threshold (a distance in metres) must be > 0, got {self.threshold!r}")
        for name, low in (("max_age", 0), ("min_hits", 1), ("max_coast", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.max_coast > self.max_age:
            raise InvalidInputError(f"max_coast ({self.max_coast}) must be <= max_age ({self.max_age})")
        if not isinstance(self.use_ego_pose, bool):
            raise InvalidInputError(f"use_ego_pose must be a bool, got {self.use_ego_pose!r}")
        if not isinstance(self.kalman, KalmanConfig):
            raise InvalidInputError(f"kalman must be a KalmanConfig, got {type(self.kalman).__name__}")

    @property
    def affinity_threshold(self) -> float:
        """The threshold on the affinity (the negated distance for "distance")."""
        thr = DEFAULT_THRESHOLDS[self.metric] if self.threshold is None else float(self.threshold)
        return -thr if self.metric == "distance" else thr


def _pose_matrix(pose: object) -> np.ndarray:
    if not isinstance(pose, torch.Tensor) or tuple(pose.shape[-2:]) != (4, 4) or pose.numel() != 16:
        shape = list(pose.shape) if isinstance(pose, torch.Tensor) else type(pose).__name__
        raise InvalidInputError(f"frame.ego_pose must be a [1, 4, 4] or [4, 4] tensor, got {shape}")
    check_finite(pose.reshape(1, 16), "frame.ego_pose")
    return pose.detach().cpu().double().reshape(4, 4).numpy()


def boxes_to_world(boxes: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Sensor-frame boxes ``[K, 7]`` into the world frame of a world-from-sensor ``pose``.

    Centres get the full rigid transform, yaw adds the pose's heading about +z.
    """
    out = boxes.astype(np.float64, copy=True)
    out[:, :3] = boxes[:, :3] @ pose[:3, :3].T + pose[:3, 3]
    out[:, 6] = wrap_angle(boxes[:, 6] + math.atan2(pose[1, 0], pose[0, 0]))
    return out


def boxes_from_world(boxes: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The inverse of :func:`boxes_to_world`."""
    out = boxes.astype(np.float64, copy=True)
    out[:, :3] = (boxes[:, :3] - pose[:3, 3]) @ pose[:3, :3]
    out[:, 6] = wrap_angle(boxes[:, 6] - math.atan2(pose[1, 0], pose[0, 0]))
    return out


def _detections(frame: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [K, 7] float64, labels [K] int64, scores [K] float64)`` of a frame."""
    if not isinstance(frame, Data):
        raise InvalidInputError(f"frame must be a torch_geometric Data, got {type(frame).__name__}")
    boxes = getattr(frame, "boxes", None)
    if boxes is None:
        raise InvalidInputError("frame has no boxes (the [K, 7] detections)")
    check_points(boxes, "frame.boxes", dim=7)
    k = boxes.shape[0]
    if bool((boxes[:, 3:6] < 0).any()):
        raise InvalidInputError("frame.boxes has negative sizes (l, w, h must be >= 0)")
    labels = getattr(frame, "box_labels", None)
    if labels is None:
        labels = torch.zeros(k, dtype=torch.long)
    check_index(labels, "frame.box_labels", k)
    scores = getattr(frame, "box_scores", None)
    if scores is None:
        scores = torch.ones(k)
    if not isinstance(scores, torch.Tensor) or scores.shape != (k,) or not scores.is_floating_point():
        raise InvalidInputError(f"frame.box_scores must be a float tensor of shape [{k}]")
    check_finite(scores, "frame.box_scores")
    return (boxes.detach().cpu().double().numpy(), labels.detach().cpu().numpy().astype(np.int64),
            scores.detach().cpu().double().numpy())


class Tracker:
    """AB3DMOT multi-object tracker: feed one frame of detections at a time.

    Example::

        tracker = Tracker(TrackerConfig(metric="giou_3d"))
        for frame in frames:                # Data(boxes, box_labels, box_scores[, ego_pose])
            tracks = tracker.update(frame)  # Data(boxes, box_labels, box_scores, track_id)

    Args:
        config: a :class:`TrackerConfig` (default ``TrackerConfig()``).
        **kwargs: or its fields directly, e.g. ``Tracker(metric="distance", max_age=3)``.

    Track ids are ``0, 1, 2...`` in order of birth and never reused; :meth:`reset` starts
    a new sequence. Tracks are reported at their filtered boxes with the score and class
    of their last matched detection.
    """

    def __init__(self, config: Optional[TrackerConfig] = None, **kwargs) -> None:
        if config is not None and kwargs:
            raise InvalidInputError("pass either config or keyword arguments, not both")
        if config is not None and not isinstance(config, TrackerConfig):
            raise InvalidInputError(f"config must be a TrackerConfig, got {type(config).__name__}")
        try:
            self.config = config if config is not None else TrackerConfig(**kwargs)
        except TypeError as exc:
            raise InvalidInputError(f"bad Tracker argument: {exc}") from None
        self.reset()

    def reset(self) -> None:
        """Forget every track; the next frame starts a new sequence (ids restart at 0)."""
        self.state = KalmanState.empty()
        self.ids = np.zeros(0, dtype=np.int64)
        self.labels = np.zeros(0, dtype=np.int64)
        self.scores = np.zeros(0)
        self.hits = np.zeros(0, dtype=np.int64)
        self.misses = np.zeros(0, dtype=np.int64)  # frames since the last match
        self.frame_count = 0
        self.next_id = 0

    def __len__(self) -> int:
        """Number of live (confirmed or tentative) tracks."""
        return len(self.ids)

    def update(self, frame: Data) -> Data:
        """Advance one frame with its detections; return the tracks to report.

        Args:
            frame: ``Data`` with ``boxes`` ``[K, 7]``, optional ``box_labels`` ``[K]``
                (default all 0), ``box_scores`` ``[K]`` (default all 1) and ``ego_pose``.

        Returns:
            ``Data(boxes [T, 7] float32, box_labels [T] long, box_scores [T] float32,
            track_id [T] long)`` in the frame's own (sensor) frame, sorted by track id;
            ``frame`` is copied over when the input has one. The input is not modified.
        """
        cfg = self.config
        boxes, labels, scores = _detections(frame)
        pose = None
        if cfg.use_ego_pose and getattr(frame, "ego_pose", None) is not None:
            pose = _pose_matrix(frame.ego_pose)
            boxes = boxes_to_world(boxes, pose)
        if cfg.score_threshold is not None:
            keep = scores >= cfg.score_threshold
            boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
        boxes[:, 6] = wrap_angle(boxes[:, 6])
        self.frame_count += 1

        self.state = kf_predict(self.state, cfg.kalman)
        predicted = self._boxes()
        same = self.labels[:, None] == labels[None, :]
        affinity = _affinity_np(predicted, boxes, cfg.metric, same, cfg.affinity_threshold)
        rows, cols = hungarian_match(affinity, cfg.affinity_threshold, self.labels, labels)

        if rows.size:
            matched = self.state.select(rows)
            corrected = kf_update(matched, boxes[cols], cfg.kalman)
            self.state.mean[rows] = corrected.mean
            self.state.cov[rows] = corrected.cov
            self.scores[rows] = scores[cols]
        hit = np.zeros(len(self.ids), dtype=bool)
        hit[rows] = True
        self.hits = self.hits + hit
        self.misses = np.where(hit, 0, self.misses + 1)

        alive = self.misses <= cfg.max_age
        self._select(alive)
        born = np.ones(boxes.shape[0], dtype=bool)
        born[cols] = False
        self._birth(boxes[born], labels[born], scores[born])
        return self._report(frame, pose)

    # ---------------------------------------------------------------- internals

    def _boxes(self) -> np.ndarray:
        out = self.state.boxes()
        out[:, 3:6] = np.maximum(out[:, 3:6], _MIN_SIZE)
        return out

    def _select(self, keep: np.ndarray) -> None:
        self.state = self.state.select(keep)
        for name in ("ids", "labels", "scores", "hits", "misses"):
            setattr(self, name, getattr(self, name)[keep])

    def _birth(self, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> None:
        m = boxes.shape[0]
        self.state = self.state.concat(kf_init(boxes, self.config.kalman))
        self.ids = np.concatenate([self.ids, self.next_id + np.arange(m, dtype=np.int64)])
        self.next_id += m
        self.labels = np.concatenate([self.labels, labels])
        self.scores = np.concatenate([self.scores, scores])
        self.hits = np.concatenate([self.hits, np.ones(m, dtype=np.int64)])
        self.misses = np.concatenate([self.misses, np.zeros(m, dtype=np.int64)])

    def _report(self, frame: Data, pose: Optional[np.ndarray]) -> Data:
        cfg = self.config
        confirmed = (self.hits >= cfg.min_hits) | (self.frame_count <= cfg.min_hits)
        show = confirmed & (self.misses <= cfg.max_coast)
        idx = np.nonzero(show)[0]
        idx = idx[np.argsort(self.ids[idx], kind="stable")]
        boxes = self._boxes()[idx]
        if pose is not None:
            boxes = boxes_from_world(boxes, pose)
        out = Data(boxes=torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 7),
                   box_labels=torch.from_numpy(self.labels[idx].copy()),
                   box_scores=torch.from_numpy(self.scores[idx].astype(np.float32)),
                   track_id=torch.from_numpy(self.ids[idx].copy()))
        if getattr(frame, "frame", None) is not None:
            out.frame = frame.frame
        return out
