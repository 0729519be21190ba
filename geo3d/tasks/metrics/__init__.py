"""Metrics computed from dataset-wide confusion matrices."""

from geo3d.tasks.metrics.segmentation import *  # noqa: F401,F403
from geo3d.tasks.metrics import segmentation
from geo3d.tasks.metrics import tracking  # geo3d.tasks.metrics.tracking.evaluate_tracking, hota

__all__ = segmentation.__all__
