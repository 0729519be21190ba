"""Models: point-cloud backbones, heads and the registry.

``create(name, **kwargs)`` builds a registered model, ``list_models()`` lists the names.
Every model maps a torch_geometric ``Data``/``Batch`` to logits and has ``task`` and
``loss(logits, data)``.
"""

from geo3d.models.registry import create, list_models, register
from geo3d.models.pretrained import list_pretrained
from geo3d.models.heads import ClassificationHead, PointCloudModel, SegmentationHead
from geo3d.models import backbones  # registers dgcnn_*, pointnet2_*, equivariant_*
from geo3d.models import gem  # registers gem_seg, gem_corr
from geo3d.models import hand_pose  # registers hand_pose, hand_pose_small
from geo3d.models import detection  # registers pointnet2_det, dgcnn_det
from geo3d.models import temporal  # registers local_seg; FeatureReuse
from geo3d.models import voxel_unet  # registers voxel_unet_seg

__all__ = [
    "create",
    "list_models",
    "list_pretrained",
    "register",
    "ClassificationHead",
    "SegmentationHead",
    "PointCloudModel",
    "backbones",
]
