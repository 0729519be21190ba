"""Multi-object tracking of 3D boxes: an AB3DMOT-style tracker (Kalman filter + Hungarian)."""

from geo3d.tasks.tracking.association import *  # noqa: F401,F403
from geo3d.tasks.tracking.detections import *  # noqa: F401,F403
from geo3d.tasks.tracking.kalman import KalmanConfig
from geo3d.tasks.tracking.tracker import *  # noqa: F401,F403
from geo3d.tasks.tracking import association, detections, tracker

__all__ = tracker.__all__ + association.__all__ + detections.__all__ + ["KalmanConfig"]
