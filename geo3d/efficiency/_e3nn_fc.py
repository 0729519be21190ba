"""e3nn's ``FullyConnectedNet`` (the radial MLPs) read as plain linear layers.

An e3nn layer ``_Layer`` keeps a raw weight ``W`` ``[h_in, h_out]`` and computes
``act(x @ (W * s)) * sqrt(var_out)`` (hidden layers) or ``x @ (W * s)`` (the last), with
``s = 1 / sqrt(h_in * var_in)`` (``/ var_out`` inside the root for the last layer) and
``act = normalize2mom(f)``, i.e. ``f(.) * c`` with a constant ``c`` making the second
moment 1 on a standard normal input (``c = 1`` exactly when ``|c - 1| < 1e-4``).
Structured pruning rescales kept weights by ``s_old / s_new``; int8 quantization needs
the net as an ``nn.Sequential`` of ``nn.Linear`` and activation modules.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from e3nn.math import normalize2mom
from torch import nn

__all__ = ["weight_scale", "as_sequential"]

_ACTS = {F.silu: nn.SiLU, F.relu: nn.ReLU, torch.relu: nn.ReLU, torch.tanh: nn.Tanh,
         torch.sigmoid: nn.Sigmoid}


def weight_scale(layer: nn.Module) -> float:
    """``s``: what the e3nn ``_Layer`` multiplies its raw weight by (its fan-in norm)."""
    var = layer.var_in if layer.act is not None else layer.var_in / layer.var_out
    return (layer.h_in * var) ** -0.5


@torch.no_grad()
def as_sequential(fc: nn.Module) -> Optional[nn.Sequential]:
    """An ``nn.Sequential`` of ``nn.Linear(bias=False)`` and activation modules computing
    what the e3nn ``FullyConnectedNet`` ``fc`` computes (same dtype and device).

    Each ``Linear`` holds ``(W * s).T``; the constant after an activation (``c *
    sqrt(var_out)``) is folded into the next ``Linear``. None when an activation is not
    one of SiLU, ReLU, tanh, sigmoid, or when the net ends with one (``out_act``: its
    constant would have nowhere to go).
    """
    mods, carry = [], 1.0
    layers = list(fc)
    for i, layer in enumerate(layers):
        w = layer.weight * (weight_scale(layer) * carry)
        lin = nn.utils.skip_init(nn.Linear, layer.h_in, layer.h_out, bias=False,
                                 device=w.device, dtype=w.dtype)
        lin.weight.copy_(w.T)
        mods.append(lin)
        carry = 1.0
        act = layer.act
        if act is None:
            continue
        module = _ACTS.get(act.f) if isinstance(act, normalize2mom) else None
        if module is None or i == len(layers) - 1:
            return None
        mods.append(module())
        carry = (1.0 if act._is_id else act.cst) * layer.var_out**0.5
    return nn.Sequential(*mods)
