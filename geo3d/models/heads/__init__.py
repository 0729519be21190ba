"""Task heads (classification, segmentation) and the backbone + head model wrapper."""

from geo3d.models.heads.classification import ClassificationHead
from geo3d.models.heads.model import PointCloudModel
from geo3d.models.heads.segmentation import SegmentationHead

__all__ = ["ClassificationHead", "SegmentationHead", "PointCloudModel"]
