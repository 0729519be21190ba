"""Torch datasets: the embedded synthetic default and loaders for real dataset layouts."""

from geo3d.datasets.kitti import *  # noqa: F401,F403
from geo3d.datasets.semantic_kitti import *  # noqa: F401,F403
from geo3d.datasets.synthetic_lidar import *  # noqa: F401,F403
from geo3d.datasets.synthetic_sequences import *  # noqa: F401,F403
from geo3d.datasets import kitti, semantic_kitti, synthetic_lidar, synthetic_sequences

__all__ = kitti.__all__ + semantic_kitti.__all__ + synthetic_lidar.__all__ + synthetic_sequences.__all__
