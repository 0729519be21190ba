"""Point-cloud backbones: DGCNN, PointNet++ and the E(3)-equivariant network.

Importing a backbone module registers its factory functions in
:mod:`geo3d.models.registry`.
"""

from geo3d.models.backbones.dgcnn import DGCNN, EdgeConv
from geo3d.models.backbones.pointnet2 import PointNet2, SetAbstraction, FeaturePropagation
from geo3d.models.backbones import dgcnn, equivariant, pointnet2

__all__ = [
    "DGCNN",
    "EdgeConv",
    "PointNet2",
    "SetAbstraction",
    "FeaturePropagation",
    "dgcnn",
    "pointnet2",
    "equivariant",
]
