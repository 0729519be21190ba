"""Mixed precision per layer, chosen by sensitivity: which ``nn.Linear`` keeps 8 bits.

Our own code: the maintained toolkits either quantize every layer at one width (torchao,
PT2E) or search mixed precision for CNN/transformer graphs they can trace (AIMET's AMP,
NNCF's HAWQ-based init); geo3d models are not traceable as one graph (data-dependent
neighbour searches), so we measure layer by layer in eager mode.

* :func:`sensitivity`: for each ``nn.Linear`` and bit width, fake-quantize only that layer
  (its weight and its input, LSQ+ initialisation, no training; see
  :mod:`geo3d.efficiency.quantize`) and record how much ``model.loss`` on the batches rises
  over the float model. This is the direct, measured form of the per-layer sensitivity of
  HAWQ (Dong et al., "HAWQ: Hessian AWare Quantization of neural networks with
  mixed-precision", ICCV 2019), which estimates the same loss increase from the Hessian
  trace; ZeroQ (Cai et al., CVPR 2020) measures it directly too, as a KL divergence.
* :func:`choose_bits`: a greedy knapsack. All layers start at the highest width; the layer
  whose next lower width costs the least loss increase per weight bit saved is lowered,
  until the parameter-weighted mean weight bits reach the target.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Mapping, Sequence

import torch
from torch import Tensor, nn

from geo3d.efficiency._batches import cycle_batches
from geo3d.efficiency.quantize import attach_lsq, detach_lsq
from geo3d.errors import InvalidInputError

__all__ = ["sensitivity", "choose_bits", "mean_bits"]


def sensitivity(model: nn.Module, batches: Any,
                bits: Sequence[int] = (8, 4, 2)) -> Dict[str, Dict[int, float]]:
    """The loss increase of quantizing each ``nn.Linear`` alone, per bit width.

    For every ``nn.Linear`` (in ``named_modules`` order) and every width, only that layer's
    weight (signed, LSQ+ init) and input (unsigned with offset, range of the first batch)
    are fake-quantized; the mean ``model.loss(model(batch), batch)`` over ``batches`` minus
    the float model's is recorded. Runs in eval mode under ``no_grad`` on a copy.

    Args:
        model: a float model with ``loss(outputs, batch)``; left untouched.
        batches: one input (``Data``/``Batch``/Tensor) or an iterable of inputs.
        bits: the widths to try, each an integer in 2..8 (default ``(8, 4, 2)``).

    Returns:
        ``{layer name: {bits: loss increase}}`` (floats; may be slightly negative when
        quantization happens to help).

    Raises:
        InvalidInputError: no ``loss``, no ``nn.Linear``, bad ``bits`` or ``batches``, or a
            loss that is not finite.
    """
    if not isinstance(model, nn.Module) or not callable(getattr(model, "loss", None)):
        raise InvalidInputError("model must be an nn.Module with loss(outputs, batch)")
    widths = _widths(bits)
    data = _batch_list(batches, "batches")
    work = copy.deepcopy(model).eval()
    names = [n for n, m in work.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise InvalidInputError(f"sensitivity found no nn.Linear in {type(model).__name__}")
    base = _mean_loss(work, data, "the float model")
    out: Dict[str, Dict[int, float]] = {}
    for name in names:
        layer = work.get_submodule(name)
        out[name] = {}
        for b in widths:
            handle = attach_lsq(layer, b)
            try:
                out[name][b] = _mean_loss(work, data, f"{name} at {b} bits") - base
            finally:
                detach_lsq(layer, handle)
    return out


def choose_bits(sensitivity: Mapping[str, Mapping[int, float]], params_per_layer: Mapping[str, int],
                target_bits: float) -> Dict[str, int]:
    """Bits per layer whose parameter-weighted mean is ``<= target_bits``, chosen greedily.

    Every layer starts at the highest width. While the mean weight bits
    ``sum(params * bits) / sum(params)`` exceed ``target_bits``, the layer (not yet at the
    lowest width) with the smallest ``(S[next] - S[current]) / (params * (current - next))``
    is moved to its next lower width (``S`` its sensitivity; ties go to the first layer).

    Args:
        sensitivity: ``{layer: {bits: loss increase}}``, e.g. from :func:`sensitivity`;
            every layer needs the same widths (integers in 1..32).
        params_per_layer: weight parameters of each layer (same keys, integers >= 1).
        target_bits: the mean weight bits to reach.

    Returns:
        ``{layer: bits}`` in the order of ``sensitivity``.

    Raises:
        InvalidInputError: mismatched or malformed inputs, or a target below the mean at the
            lowest width (unreachable).
    """
    widths = _check_choice(sensitivity, params_per_layer, target_bits)
    lowest = mean_bits({k: widths[-1] for k in sensitivity}, params_per_layer)
    if target_bits < lowest:
        raise InvalidInputError(f"target_bits={target_bits} is unreachable: every layer at the lowest "
                                f"width {widths[-1]} gives a mean of {lowest:g} bits")
    chosen = {k: widths[0] for k in sensitivity}
    while mean_bits(chosen, params_per_layer) > target_bits:
        best, best_cost = None, math.inf
        for layer, b in chosen.items():
            i = widths.index(b)
            if i + 1 == len(widths):
                continue
            lower = widths[i + 1]
            saved = params_per_layer[layer] * (b - lower)
            cost = (sensitivity[layer][lower] - sensitivity[layer][b]) / saved
            if cost < best_cost:
                best, best_cost = layer, cost
        chosen[best] = widths[widths.index(chosen[best]) + 1]
    return chosen


def mean_bits(layer_bits: Mapping[str, int], params_per_layer: Mapping[str, int]) -> float:
    """The parameter-weighted mean ``sum(params * bits) / sum(params)`` over ``layer_bits``."""
    total = sum(params_per_layer[k] for k in layer_bits)
    return sum(params_per_layer[k] * b for k, b in layer_bits.items()) / total


# --------------------------------------------------------------------------- helpers


def _widths(bits: Any, low: int = 2, high: int = 8) -> List[int]:
    """Distinct bit widths, highest first; each an integer in ``low..high``."""
    try:
        items = list(bits)
    except TypeError:
        items = None
    if not items or any(isinstance(b, bool) or not isinstance(b, int) or not low <= b <= high
                        for b in items):
        raise InvalidInputError(f"bits must be a non-empty sequence of integers in {low}..{high}, "
                                f"got {bits!r}")
    return sorted(set(items), reverse=True)


def _check_choice(sensitivity: Any, params: Any, target_bits: Any) -> List[int]:
    """Validate :func:`choose_bits`' arguments; return the common widths, highest first."""
    if not isinstance(sensitivity, Mapping) or not sensitivity:
        raise InvalidInputError(f"sensitivity must be a non-empty dict {{layer: {{bits: loss}}}}, "
                                f"got {sensitivity!r}")
    if not isinstance(params, Mapping):
        raise InvalidInputError(f"params_per_layer must be a dict {{layer: params}}, got {params!r}")
    missing, extra = sorted(set(sensitivity) - set(params)), sorted(set(params) - set(sensitivity))
    if missing or extra:
        raise InvalidInputError(f"params_per_layer must have the layers of sensitivity: missing "
                                f"{missing}, unknown {extra}")
    bad = {k: v for k, v in params.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise InvalidInputError(f"params_per_layer values must be integers >= 1, got {bad}")
    if isinstance(target_bits, bool) or not isinstance(target_bits, (int, float)) \
            or not math.isfinite(target_bits):
        raise InvalidInputError(f"target_bits must be a finite number, got {target_bits!r}")
    widths = None
    for layer, per_bits in sensitivity.items():
        if not isinstance(per_bits, Mapping) or not per_bits:
            raise InvalidInputError(f"sensitivity[{layer!r}] must be a non-empty dict {{bits: loss}}, "
                                    f"got {per_bits!r}")
        mine = _widths(tuple(per_bits), 1, 32)
        if widths is not None and mine != widths:
            raise InvalidInputError(f"sensitivity[{layer!r}] has widths {mine}, the first layer {widths}: "
                                    f"every layer needs the same")
        widths = mine
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in per_bits.values()):
            raise InvalidInputError(f"sensitivity[{layer!r}] values must be finite numbers, got {dict(per_bits)}")
    return widths


def _batch_list(data: Any, name: str) -> List[Any]:
    """``data`` as a list of inputs (one input -> a list of one)."""
    if isinstance(data, Tensor) or hasattr(data, "pos"):
        return [data]
    try:
        data = list(data)
    except TypeError:
        pass
    cycle_batches(data, name)  # the shared checks and messages: None, not iterable, empty
    return data


@torch.no_grad()
def _mean_loss(model: nn.Module, data: List[Any], what: str) -> float:
    loss = sum(float(model.loss(model(b), b)) for b in data) / len(data)
    if not math.isfinite(loss):
        raise InvalidInputError(f"sensitivity: the loss of {what} is not finite ({loss})")
    return loss
