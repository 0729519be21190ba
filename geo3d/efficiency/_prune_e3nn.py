"""Structured pruning of the e3nn equivariant models: irreps copies and radial units.

Our own code: no pruning library handles e3nn irreps (they see an ``o3.Linear`` or a tensor
product's weights as flat vectors, not as paths between copies of irreps). A hidden channel
of :class:`~geo3d.models.backbones.equivariant.EquivariantBackbone` is one copy ``u`` of an
irrep ``(l, p)``: its ``2l + 1`` components rotate together, and every layer (``o3.Linear``,
the channel-wise "uvu" tensor product, the gate) maps whole copies to whole copies, so
removing whole copies keeps the network exactly E(3) equivariant.

A copy is removed from every layer at once (the residual stream carries it through all of
them): the ``lin_out`` and ``self_connection`` weights that produce it and, for ``l > 0``,
its gate scalar; the next layer's ``lin_in`` and ``self_connection`` weights that read it;
its tensor-product paths, and with them the radial MLP's output weights of those paths; the
head's columns that read it (a scalar and, for segmentation, its pooled copies). Each layer
is rebuilt as an ``EquivariantConv`` of the reduced irreps (smaller ``o3.Linear``\\ s, tensor
product, gate and radial output) and the kept weights are copied in through e3nn's
``weight_views``, times the ratio of the old to the new path normalisation (e3nn divides a
path by the square root of the fan-in of its output, which shrinks with the inputs): the
result computes exactly what the original computes with the removed copies set to zero.

Ranking: a copy's score is the squared norm of the ``lin_out`` and ``self_connection``
weights producing it (each of its ``2l + 1`` gate inputs, and its gate), summed over the
layers; the lowest-scoring ``mul - max(1, round(mul * (1 - amount)))`` copies of every
hidden irrep are removed.

The radial MLPs (e3nn ``FullyConnectedNet``, most of the model's dense MACs: they run per
edge) also lose ``amount`` of the units of each hidden layer: ``max(1, round(h * (1 -
amount)))`` are kept, those with the largest product ``||w_in|| * ||w_out||`` of the norms
of their incoming and outgoing raw weights (outgoing: to the next layer's units, or to the
tensor-product weights that are kept), per layer, on the weights before any unit is
removed. The kept weights are rescaled by ``s_old / s_new`` of e3nn's ``1 / sqrt(fan_in)``
normalisation (:func:`~geo3d.efficiency._e3nn_fc.weight_scale`), so every kept unit
computes what it did. The MLP reads invariant edge lengths only, so equivariance stays
exact. Like the copy removal, this changes the function: the result equals the original
with the removed copies and the removed units' outgoing weights zeroed; fine-tune it, as
after channel pruning of DGCNN.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from e3nn import o3
from torch import Tensor, nn

from geo3d.efficiency._e3nn_fc import weight_scale

__all__ = ["prune_irreps_copies"]


@torch.no_grad()
def prune_irreps_copies(model: nn.Module, amount: float) -> None:
    """Remove ``amount`` of the copies of every hidden irrep, and of the radial MLPs' hidden
    units, of an e3nn equivariant ``model`` (a backbone ``EquivariantBackbone`` and an
    ``nn.Sequential`` head), in place."""
    backbone = model.backbone
    irreps = backbone.irreps_out  # every layer's output (residual chain: the same channels)
    kept = _kept_copies(list(backbone.layers), irreps, amount)
    if all(len(k) == mul for k, (mul, _) in zip(kept, irreps)) and all(
            _keep(h, amount) == h for layer in backbone.layers for h in layer.radial.hs[1:-1]):
        return
    hidden = _columns(irreps, kept)
    cols_in = torch.ones(backbone.layers[0].irreps_in.dim, dtype=torch.bool)
    layers = []
    for layer in backbone.layers:
        layers.append(_rebuilt_layer(layer, cols_in, hidden, amount))
        cols_in = hidden
    scalars = backbone.scalar_index.cpu()
    backbone.layers = nn.ModuleList(layers)
    backbone._set_irreps_out(layers[-1].irreps_out, backbone.scalar_index.device)
    head = model.head[0]  # reads [scalars] (classification) or [own, max, mean] scalars
    cols = hidden[scalars].repeat(head.in_features // len(scalars))
    head.weight = nn.Parameter(head.weight[:, cols.to(head.weight.device)].clone())
    head.in_features = int(cols.sum())


def _keep(n: int, amount: float) -> int:
    """How many of ``n`` channels (copies, units) to keep."""
    return max(1, int(round(n * (1 - amount))))


def _kept_copies(layers: List[nn.Module], irreps: o3.Irreps, amount: float) -> List[Tensor]:
    """The copies of every slot of ``irreps`` to keep (sorted), by the module's ranking."""
    scores = [torch.zeros(mul, dtype=torch.float64) for mul, _ in irreps]
    for layer in layers:
        for total, s in zip(scores, _copy_scores(layer)):
            total += s
    kept = []
    for (mul, _), s in zip(irreps, scores):
        k = _keep(mul, amount)
        keep = torch.ones(mul, dtype=torch.bool)
        keep[torch.topk(s, mul - k, largest=False).indices] = False
        kept.append(keep.nonzero().flatten())
    return kept


def _copy_scores(layer: nn.Module) -> List[Tensor]:
    """Per slot of ``layer.irreps_out``: the squared norm of the weights producing each copy."""
    produced = _produced_norm2(layer.lin_out) + _produced_norm2(layer.self_connection)
    scalars, gates, gated = _gate_sources(layer.gate)
    per_col = produced[torch.cat([scalars, gated])]  # gate output column <- its input
    gate_of_copy = produced[gates]  # gated copy k (in order) <- gate k
    out, k = [], 0
    n_scalars = len(scalars)
    for (mul, ir), sl in zip(layer.irreps_out, layer.irreps_out.slices()):
        score = per_col[sl].view(mul, ir.dim).sum(dim=1)
        if sl.start >= n_scalars:
            score = score + gate_of_copy[k:k + mul]
            k += mul
        out.append(score)
    return out


def _produced_norm2(lin: nn.Module) -> Tensor:
    """Per output column of an ``o3.Linear``: squared norm of the weights writing its copy."""
    out = torch.zeros(lin.irreps_out.dim, dtype=torch.float64)
    slices = lin.irreps_out.slices()
    for _, ins, w in lin.weight_views(yield_instruction=True):
        per_copy = w.detach().to(torch.float64).pow(2).sum(dim=0).cpu()
        out[slices[ins.i_out]] += per_copy.repeat_interleave(lin.irreps_out[ins.i_out].ir.dim)
    return out


def _gate_sources(gate: nn.Module) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``gate.irreps_in`` column read by each scalar, gate and gated column of an e3nn
    ``Gate`` (its input is sorted and merged: probed with the column numbers)."""
    probe = torch.arange(gate.irreps_in.dim, dtype=torch.float64)[None]
    return tuple(t[0].long() for t in gate.sc(probe))


def _copies(irreps: o3.Irreps, cols: Tensor) -> List[Tensor]:
    """Per slot of ``irreps``: the copies whose columns ``cols`` (a bool mask) keeps."""
    out = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        block = cols[sl].view(mul, ir.dim)
        assert bool((block.all(dim=1) | ~block.any(dim=1)).all()), "a copy is split"
        out.append(block[:, 0].nonzero().flatten())
    return out


def _columns(irreps: o3.Irreps, kept: List[Tensor]) -> Tensor:
    """The bool column mask of ``irreps`` that keeps copies ``kept`` of every slot."""
    cols = torch.zeros(irreps.dim, dtype=torch.bool)
    for (mul, ir), sl, keep in zip(irreps, irreps.slices(), kept):
        block = torch.zeros(mul, ir.dim, dtype=torch.bool)
        block[keep] = True
        cols[sl] = block.flatten()
    return cols


def _reduced(irreps: o3.Irreps, cols: Tensor) -> o3.Irreps:
    return o3.Irreps([(len(k), ir) for k, (_, ir) in zip(_copies(irreps, cols), irreps)])


def _kept_gate_inputs(gate: nn.Module, out_cols: Tensor) -> Tensor:
    """The ``gate.irreps_in`` columns (bool mask) feeding the kept output columns: scalars and
    gated components, and the gate of each kept gated copy."""
    scalars, gates, gated = _gate_sources(gate)
    n = len(scalars)
    first = torch.cat([torch.arange(sl.start, sl.stop, ir.dim, dtype=torch.long)
                       for (_, ir), sl in zip(gate.irreps_gated, gate.irreps_gated.slices())]
                      + [torch.zeros(0, dtype=torch.long)])  # gated copy k <- its first column
    cols = torch.zeros(gate.irreps_in.dim, dtype=torch.bool)
    cols[scalars] = out_cols[:n]
    cols[gated] = out_cols[n:]
    cols[gates] = out_cols[n + first]
    return cols


def _tp_output_columns(tp: nn.Module, cols_in: Tensor) -> Tensor:
    """The tensor product's output columns kept: a "uvu" path's copy ``u`` of input 1's."""
    keep1 = _copies(tp.irreps_in1, cols_in)
    kept = [None] * len(tp.irreps_out)
    for ins in tp.instructions:
        assert ins.connection_mode == "uvu" and kept[ins.i_out] is None
        kept[ins.i_out] = keep1[ins.i_in1]
    return _columns(tp.irreps_out, kept)


def _rebuilt_layer(layer: nn.Module, cols_in: Tensor, cols_out: Tensor,
                   amount: float) -> nn.Module:
    """An ``EquivariantConv`` of the reduced irreps and radial width holding ``layer``'s
    kept weights."""
    from geo3d.models.backbones.equivariant import EquivariantConv

    radial = layer.radial
    with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten
        new = EquivariantConv(_reduced(layer.irreps_in, cols_in),
                              _reduced(layer.irreps_out, cols_out), layer.tp.irreps_in2,
                              radial.hs[0], _keep(radial.hs[1], amount), 1.0)
    new.norm = layer.norm
    ref = next(layer.parameters())
    new.to(device=ref.device, dtype=ref.dtype)
    cols_gate = _kept_gate_inputs(layer.gate, cols_out)
    cols_mid = _tp_output_columns(layer.tp, cols_in)
    assert (new.residual, new.lin_out.irreps_in, new.lin_out.irreps_out) == (
        layer.residual, _reduced(layer.lin_out.irreps_in, cols_mid),
        _reduced(layer.lin_out.irreps_out, cols_gate))
    _copy_linear(layer.lin_in, new.lin_in, cols_in, cols_in)
    _copy_linear(layer.lin_out, new.lin_out, cols_mid, cols_gate)
    _copy_linear(layer.self_connection, new.self_connection, cols_in, cols_gate)
    assert new.radial.hs[1:-1] == [_keep(h, amount) for h in radial.hs[1:-1]]
    _copy_radial(radial, new.radial, *_tp_weight_map(layer.tp, new.tp, cols_in))
    new.train(layer.training)
    return new


def _copy_radial(old: nn.Module, new: nn.Module, src: Tensor, scale: Tensor) -> None:
    """Copy the kept units of the radial MLP ``old`` into its smaller rebuild ``new``: in
    every hidden layer the ``new`` width of highest ``||w_in|| * ||w_out||``, and the
    tensor-product weights ``src`` times their path ratios ``scale``."""
    dev = old[0].weight.device
    src = src.to(dev)
    ws = [lay.weight.detach() for lay in old]  # [h_in, h_out]
    ws[-1] = ws[-1][:, src]
    kept = [torch.arange(old.hs[0], device=dev)]
    for w_in, w_out, h in zip(ws, ws[1:], new.hs[1:-1]):
        score = w_in.norm(dim=0) * w_out.norm(dim=1)
        kept.append(torch.sort(torch.topk(score, h).indices).values)
    kept.append(torch.arange(len(src), device=dev))
    for i, (lay, lay_new) in enumerate(zip(old, new)):
        w = ws[i][kept[i]][:, kept[i + 1]] * (weight_scale(lay) / weight_scale(lay_new))
        lay_new.weight.copy_(w * scale.to(w) if i == len(ws) - 1 else w)


def _copy_linear(old: nn.Module, new: nn.Module, cols_in: Tensor, cols_out: Tensor) -> None:
    """Copy the kept paths of an ``o3.Linear`` (no biases) into its reduced rebuild."""
    k_in, k_out = _copies(old.irreps_in, cols_in), _copies(old.irreps_out, cols_out)
    views = zip(old.weight_views(yield_instruction=True), new.weight_views(yield_instruction=True))
    for (_, ins, w), (_, ins_new, w_new) in views:
        assert (ins.i_in, ins.i_out) == (ins_new.i_in, ins_new.i_out)
        kept = w[k_in[ins.i_in].to(w.device)][:, k_out[ins.i_out].to(w.device)]
        assert kept.shape == w_new.shape
        w_new.copy_(kept * (ins.path_weight / ins_new.path_weight))


def _tp_weight_map(old: nn.Module, new: nn.Module, cols_in: Tensor) -> Tuple[Tensor, Tensor]:
    """For every per-edge weight of the reduced tensor product ``new``: the index of its
    weight in ``old`` and the path-normalisation ratio (old / new) it is scaled by."""
    keep1 = _copies(old.irreps_in1, cols_in)
    src = torch.empty(new.weight_numel, dtype=torch.long)
    scale = torch.empty(new.weight_numel, dtype=torch.float64)
    old_views = old.weight_views(torch.arange(old.weight_numel)[None], yield_instruction=True)
    new_views = new.weight_views(torch.arange(new.weight_numel)[None], yield_instruction=True)
    for (_, ins, w), (_, ins_new, w_new) in zip(old_views, new_views):
        assert (ins.i_in1, ins.i_in2, ins.i_out) == (ins_new.i_in1, ins_new.i_in2, ins_new.i_out)
        kept = w[0][keep1[ins.i_in1]]  # "uvu": [mul1, mul2], copies u of input 1
        assert kept.shape == w_new.shape[1:]
        src[w_new.flatten()] = kept.flatten()
        scale[w_new.flatten()] = ins.path_weight / ins_new.path_weight
    return src, scale
