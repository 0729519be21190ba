"""Structured pruning of GEM-CNN: whole regular fields (rho-fields) inside residual blocks.

Our own code (no pruning library knows gauge-equivariant features). A GEM channel is one
band-limited regular field: its ``2N + 1`` Fourier coefficients transform together under a
gauge change (``rho(-g)``), and every GEM layer (convolution, batch norm, regular
nonlinearity, pooling) treats a channel as a whole. Removing whole channels therefore keeps
the network exactly gauge equivariant.

The hidden channels of every :class:`~geo3d.models.gem.resnet.GemResBlock` (``conv1``'s
outputs -> ``norm1`` -> nonlinearity -> ``conv2``'s inputs) feed nothing outside the
block, so they are removed without tracking dependencies across the U-Net, and the block
is rebuilt smaller (a real speed-up). Channels on the residual paths (block outputs,
encoder skips) are kept. Ranking: ``|gamma| / sqrt(var + eps) * ||W_c||`` (``norm1``'s
scale times the norm of ``conv1``'s weights that produce channel ``c``; network slimming,
Liu et al. 2017).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["prune_gem_fields", "keep_norm_entries"]


@torch.no_grad()
def prune_gem_fields(model: nn.Module, amount: float) -> int:
    """Remove ``amount`` of the hidden fields of every GEM residual block of ``model``, in
    place; returns how many blocks were pruned (0: not a GEM model)."""
    from geo3d.models.gem.resnet import GemResBlock

    blocks = [m for m in model.modules() if isinstance(m, GemResBlock)]
    for block in blocks:
        c = block.conv1.out_channels
        keep = _top_fields(block, max(1, int(round(c * (1 - amount)))))
        _keep_outputs(block.conv1, keep)
        keep_norm_entries(block.norm1, keep)
        _keep_inputs(block.conv2, keep)
    return len(blocks)


def _top_fields(block: nn.Module, k: int) -> Tensor:
    conv, bn = block.conv1, block.norm1
    weights = torch.cat([conv.weight.flatten(1), conv.self_weight.flatten(1)], dim=1)
    score = weights.norm(dim=1) * bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)
    return torch.sort(torch.topk(score, k).indices).values


def _keep_outputs(conv: nn.Module, keep: Tensor) -> None:
    conv.weight = nn.Parameter(conv.weight[keep].clone())
    conv.self_weight = nn.Parameter(conv.self_weight[keep].clone())
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias[keep].clone())
    conv.out_channels = len(keep)


def _keep_inputs(conv: nn.Module, keep: Tensor) -> None:
    conv.weight = nn.Parameter(conv.weight[:, keep].clone())
    conv.self_weight = nn.Parameter(conv.self_weight[:, keep].clone())
    conv.in_channels = len(keep)


def keep_norm_entries(bn: nn.Module, keep: Tensor) -> None:
    """Keep entries ``keep`` of a batch norm (``nn.BatchNorm1d`` or ``RegularBatchNorm``):
    scale, shift and running statistics (shared with the channel pruning of
    :mod:`geo3d.efficiency.prune`)."""
    bn.weight = nn.Parameter(bn.weight[keep].clone())
    bn.bias = nn.Parameter(bn.bias[keep].clone())
    bn.running_mean = bn.running_mean[keep].clone()
    bn.running_var = bn.running_var[keep].clone()
    if hasattr(bn, "num_features"):
        bn.num_features = len(keep)
