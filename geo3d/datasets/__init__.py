"""Torch datasets: the embedded synthetic default and loaders for real dataset layouts."""

from geo3d.datasets.by_name import *  # noqa: F401,F403
from geo3d.datasets.kitti import *  # noqa: F401,F403
from geo3d.datasets.kitti_tracking import (KittiTracking, read_kitti_oxts_poses,  # noqa: F401
                                           read_kitti_tracking_calib, read_kitti_tracking_labels)
from geo3d.datasets.modelnet import *  # noqa: F401,F403
from geo3d.datasets.s3dis import *  # noqa: F401,F403
from geo3d.datasets.semantic_kitti import *  # noqa: F401,F403
from geo3d.datasets.shapenet_part import *  # noqa: F401,F403
from geo3d.datasets.subsample import *  # noqa: F401,F403
from geo3d.datasets.synthetic_lidar import *  # noqa: F401,F403
from geo3d.datasets.synthetic_sequences import *  # noqa: F401,F403
from geo3d.datasets.synthetic_shapes import *  # noqa: F401,F403
from geo3d.datasets.synthetic_hands import SyntheticHands  # noqa: F401
from geo3d.datasets.msra_hand import MSRAHand  # noqa: F401
from geo3d.datasets.synthetic_meshes import SyntheticMeshes  # noqa: F401
from geo3d.datasets.faust import FAUST  # noqa: F401
from geo3d.datasets import kitti, semantic_kitti, synthetic_lidar, synthetic_sequences
from geo3d.datasets import modelnet, s3dis, shapenet_part, subsample, synthetic_shapes

__all__ = kitti.__all__ + semantic_kitti.__all__ + synthetic_lidar.__all__ + synthetic_sequences.__all__
__all__ += modelnet.__all__ + s3dis.__all__ + shapenet_part.__all__ + synthetic_shapes.__all__
__all__ += subsample.__all__
from geo3d.datasets import by_name  # noqa: E402
__all__ += by_name.__all__
