"""Metrics computed from dataset-wide confusion matrices."""

from geo3d.tasks.metrics.segmentation import *  # noqa: F401,F403
from geo3d.tasks.metrics import segmentation
from geo3d.tasks.metrics import tracking  # geo3d.tasks.metrics.tracking.evaluate_tracking, hota
from geo3d.tasks.metrics import detection  # geo3d.tasks.metrics.detection.average_precision ...
from geo3d.tasks.metrics import hand_pose  # geo3d.tasks.metrics.hand_pose.HandPoseEvaluator ...

__all__ = segmentation.__all__
