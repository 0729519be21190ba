"""3D object detection: a CenterPoint-style BEV head on point backbones (``pointnet2_det``,
``dgcnn_det``)."""

from geo3d.models.detection.bev import BEVGrid, BEVNet, crop_and_voxelize, scatter_to_bev
from geo3d.models.detection.detector import PointDetector, dgcnn_det, pointnet2_det
from geo3d.models.detection.head import CenterHead, frame_boxes

__all__ = ["BEVGrid", "BEVNet", "crop_and_voxelize", "scatter_to_bev", "PointDetector",
           "pointnet2_det", "dgcnn_det", "CenterHead", "frame_boxes"]
