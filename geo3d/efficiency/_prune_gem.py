"""Structured pruning of GEM-CNN: whole regular fields (rho-fields) inside residual blocks.

Our own code (no pruning library knows gauge-equivariant features). A GEM channel is one
band-limited regular field: its ``2N + 1`` Fourier coefficients transform together under a
gauge change (``rho(-g)``), and every GEM layer (convolution, batch norm, regular
nonlinearity, pooling) treats a channel as a whole. Removing whole channels therefore keeps
the network exactly gauge equivariant.

Two kinds of fields go, ``amount`` of each:

* the hidden fields of every :class:`~geo3d.models.gem.resnet.GemResBlock` (``conv1``'s
  outputs -> ``norm1`` -> nonlinearity -> ``conv2``'s inputs), which feed nothing outside
  the block. Ranking: ``|gamma| / sqrt(var + eps) * ||W_c||`` (``norm1``'s scale times the
  norm of ``conv1``'s weights that produce field ``c``; network slimming, Liu et al. 2017);
* the fields of the residual streams of a :class:`~geo3d.models.gem.resnet.GemResNet`
  U-Net, with their dependencies tracked: a stream is written by the stem or by a block
  with a linear skip and continued by the blocks with identity skips after it; it is read
  by the next level's first block, by a decoder block through the concatenation
  ``[upsampled, encoder skip]`` and by the output convolution. Ranking: the root of the sum
  over the stream's writers' batch norms of ``(|gamma| / sqrt(var + eps))^2``.

Pruning only the hidden fields left the streams' convolutions, nonlinearities and
pooling at full width: 1.2x faster at 50%.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["prune_gem_fields", "keep_norm_entries"]


@torch.no_grad()
def prune_gem_fields(model: nn.Module, amount: float) -> int:
    """Remove ``amount`` of the hidden fields of every GEM residual block of ``model`` and
    of every residual stream of its ``GemResNet`` backbones, in place; returns how many
    blocks were pruned (0: not a GEM model)."""
    from geo3d.models.gem.resnet import GemResBlock, GemResNet

    blocks = [m for m in model.modules() if isinstance(m, GemResBlock)]
    for block in blocks:
        c = block.conv1.out_channels
        keep = _top_fields(block, _kept(c, amount))
        _keep_outputs(block.conv1, keep)
        keep_norm_entries(block.norm1, keep)
        _keep_inputs(block.conv2, keep)
    for net in [m for m in model.modules() if isinstance(m, GemResNet)]:
        _prune_streams(net, amount)
    return len(blocks)


def _kept(c: int, amount: float) -> int:
    return max(1, int(round(c * (1 - amount))))


class _Stream:
    """One residual stream: the stem or blocks that write it (their output batch norms
    rank its fields) and the blocks that continue it through identity skips."""

    def __init__(self, writer: nn.Module, norm: nn.Module) -> None:
        self.writers, self.norms = [writer], [norm]
        self.width = norm.weight.shape[0]  # before pruning
        self.keep = torch.arange(self.width)

    def rank(self, amount: float) -> None:
        score = sum((bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)) ** 2 for bn in self.norms)
        self.keep = torch.sort(torch.topk(score, _kept(self.width, amount)).indices).values


def _prune_streams(net: nn.Module, amount: float) -> None:
    """Remove ``amount`` of the fields of every residual stream of a ``GemResNet``."""
    stem = _Stream(net.stem, net.stem_norm)
    streams, enc_out = [stem], []
    reads = []  # (block, input streams in concatenation order)
    current = stem
    for blocks in net.encoder:
        for block in blocks:
            reads.append((block, [current]))
            if block.skip is None:  # identity skip: the block continues its input stream
                current.writers.append(block)
                current.norms.append(block.norm2)
            else:
                current = _Stream(block, block.norm2)
                streams.append(current)
        enc_out.append(current)
    up = current
    for level in range(len(net.decoder) - 1, -1, -1):
        block = net.decoder[level]
        reads.append((block, [up, enc_out[level]]))
        up = _Stream(block, block.norm2)
        streams.append(up)
    for stream in streams:
        stream.rank(amount)
    for stream in streams:  # writers first: their widths before any reader changes
        for writer in stream.writers:
            if writer is net.stem:
                _keep_outputs(net.stem, stream.keep)
                keep_norm_entries(net.stem_norm, stream.keep)
            else:
                _keep_outputs(writer.conv2, stream.keep)
                keep_norm_entries(writer.norm2, stream.keep)
                if writer.skip is not None:
                    writer.skip.weight = nn.Parameter(writer.skip.weight[stream.keep].clone())
    for block, inputs in reads:
        keep, offset = [], 0
        for stream in inputs:  # the concatenation's fields, in order
            keep.append(stream.keep + offset)
            offset += stream.width
        keep = torch.cat(keep)
        _keep_inputs(block.conv1, keep)
        if block.skip is not None:
            block.skip.weight = nn.Parameter(block.skip.weight[:, keep].clone())
    _keep_inputs(net.out, up.keep)


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
