"""GEM-CNN: gauge-equivariant mesh convolutions (de Haan et al., ICLR 2021).

``GemConv`` (kernels and conv), ``RegularNonlinearity`` / ``RegularBatchNorm``,
``ParallelTransportPool`` / ``Unpool`` and the ``GemResNet`` backbone, registered as
``gem_seg`` (segmentation) and ``gem_corr`` (dense correspondence).
"""

from geo3d.models.gem.conv import GemConv
from geo3d.models.gem.kernels import (apply_rho, feature_dim, fourier_kernel_basis, harmonics,
                                      kernel_basis, rho, self_interaction_basis)
from geo3d.models.gem.nonlinearity import RegularBatchNorm, RegularNonlinearity
from geo3d.models.gem.pool import (Coarsening, ParallelTransportPool, ParallelTransportUnpool,
                                   coarsen)
from geo3d.models.gem.resnet import (CorrespondenceHead, GemLevel, GemMeshModel, GemResBlock,
                                     GemResNet, gem_corr, gem_seg, mesh_levels)

__all__ = ["GemConv", "RegularNonlinearity", "RegularBatchNorm", "ParallelTransportPool",
           "ParallelTransportUnpool", "GemResBlock", "GemResNet", "GemMeshModel",
           "CorrespondenceHead", "GemLevel", "mesh_levels", "coarsen", "Coarsening",
           "gem_seg", "gem_corr", "rho", "apply_rho", "kernel_basis", "self_interaction_basis",
           "fourier_kernel_basis", "harmonics", "feature_dim"]
