"""Equivariance-aware fake quantization of e3nn irreps features (LSQ+ style, by norm).

Our own code: no library quantizes irreps features. AIMET, NNCF, torchao and brevitas
round tensors component by component (per tensor or per channel); a component of a vector
(``l = 1``) or higher-order feature changes when the input is rotated, so per-component
rounding does not commute with rotations, ``q(D(R) v) != D(R) q(v)``, and the error depends
on the pose. :class:`IrrepsQuantizer` quantizes each irrep of an ``e3nn.o3.Irreps`` layout
by what is invariant about it:

* ``0e`` (invariant scalars): LSQ+ per channel, ``round(clamp((x - beta) / s, 0, 2^b - 1))
  s + beta`` with a learnable scale ``s`` and offset ``beta`` per multiplicity channel.
* ``0o`` (pseudo-scalars, which change sign under a reflection): sign and magnitude,
  ``sign(x) round(clamp(|x| / s, 0, 2^(b-1) - 1)) s``, so ``q(-x) = -q(x)`` (an offset
  would break reflection equivariance); a learnable scale per channel.
* ``l > 0``: by the norm, ``q(v) = round(clamp(|v| / s, 0, 2^b - 1)) s v / |v|`` (and
  ``q(0) = 0``), one learnable scale per multiplicity channel shared by its ``2l + 1``
  components. The norm is invariant and the direction is kept, so ``q(D v) = D q(v)`` and
  the error ``|q(v) - v| = ||v| - q(|v|)| <= s / 2`` (in range) is the same in every pose.

Rounding uses the straight-through estimator; the scale and offset gradients are multiplied
by LSQ's ``g = 1 / sqrt(n Q_p)`` (``n`` values share a scale). Initialisation (first call)
follows LSQ+ for activations: ``0e`` from each channel's range (``s = (max - min) / Q_p``,
``beta = min``), the others from the largest magnitude (``s = max |v| / Q_p``).

Floating point: equivariance is exact in exact arithmetic. In float32, the norm of a
rotated feature differs by ~1e-7 relative, so a value that lies that close to a rounding
boundary can round one step differently (probability ~1e-7 2^b per value): a rare jump of
``s``. In float64 this is negligible.

:func:`attach_irreps_quantizers` puts these quantizers on the irreps inputs of a model's
e3nn layers (``o3.Linear``, tensor products, gates) and quantizes their weights (invariant
path weights) and the radial MLPs (``e3nn.nn.FullyConnectedNet``, invariant inputs) with
the LSQ+ quantizers of :mod:`geo3d.efficiency.quantize`.

References:
    Bhalgat, Lee, Nagel, Blankevoort & Kwak, "LSQ+: Improving low-bit quantization through
    learnable offsets and better initialization", CVPRW 2020.
    Esser et al., "Learned step size quantization", ICLR 2020.
"""

from __future__ import annotations

import math
from typing import Dict, List, Union

import torch
from e3nn import nn as enn
from e3nn import o3
from torch import Tensor, nn

from geo3d.efficiency.quantize import _GradScale, _round_ste, attach_lsq
from geo3d.errors import InvalidInputError

__all__ = ["IrrepsQuantizer", "attach_irreps_quantizers"]

_EVEN_SCALAR = o3.Irrep("0e")


class IrrepsQuantizer(nn.Module):
    """Fake-quantize features laid out as ``irreps``: scalars per channel, the rest by norm.

    See the module docstring for the formulas.

    Args:
        irreps: e3nn irreps of the feature's last dimension, e.g. ``"4x0e+2x0o+2x1o"``.
        bits: bit width, an integer in 2..8.

    Attributes:
        scale: ``[irreps.num_irreps]`` learnable scales, one per multiplicity channel in
            irreps order (used through ``|scale|``, at least 1e-8).
        offset: ``[number of 0e channels]`` learnable offsets of the ``0e`` channels.

    Shapes:
        ``[..., irreps.dim] -> [..., irreps.dim]``.
    """

    def __init__(self, irreps: Union[str, o3.Irreps], bits: int) -> None:
        super().__init__()
        try:
            self.irreps = o3.Irreps(irreps)
        except (ValueError, TypeError, AssertionError) as exc:
            raise InvalidInputError(f"irreps is not valid e3nn irreps: {irreps!r} ({exc})") from None
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
            raise InvalidInputError(f"bits must be an integer in 2..8, got {bits!r}")
        self.bits = bits
        # per slot: (columns, first scale, first offset or -1, multiplicity, irrep dim, Q_p)
        self._slots = []
        ch = off = 0
        for (mul, ir), cols in zip(self.irreps, self.irreps.slices()):
            if ir == _EVEN_SCALAR:
                self._slots.append((cols, ch, off, mul, ir.dim, 2**bits - 1))
                off += mul
            else:
                qp = 2 ** (bits - 1) - 1 if ir.l == 0 else 2**bits - 1
                self._slots.append((cols, ch, -1, mul, ir.dim, qp))
            ch += mul
        self.scale = nn.Parameter(torch.ones(ch))
        self.offset = nn.Parameter(torch.zeros(off))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        for cols, c, o, mul, dim, qp in self._slots:
            v = x[..., cols].reshape(-1, mul, dim)
            if o >= 0:
                lo, hi = v[..., 0].amin(0), v[..., 0].amax(0)
                self.scale[c:c + mul] = ((hi - lo) / qp).clamp_min(1e-8)
                self.offset[o:o + mul] = lo
            else:
                self.scale[c:c + mul] = (v.norm(dim=-1).amax(0) / qp).clamp_min(1e-8)
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 \
                or x.shape[-1] != self.irreps.dim:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidInputError(f"IrrepsQuantizer({self.irreps}) needs a floating tensor [..., "
                                    f"{self.irreps.dim}], got {got}")
        if x.numel() == 0:
            return x
        if not bool(self.initialized):
            self._init(x.detach())
        rows = x.numel() // self.irreps.dim
        lead = x.shape[:-1]
        out = []
        for cols, c, o, mul, dim, qp in self._slots:
            v = x[..., cols].reshape(*lead, mul, dim)
            g = 1.0 / math.sqrt(rows * qp)
            s = _GradScale.apply(self.scale[c:c + mul], g).abs().clamp_min(1e-8)[:, None]
            if o >= 0:  # 0e: affine, per channel
                beta = _GradScale.apply(self.offset[o:o + mul], g)[:, None]
                q = _round_ste(torch.clamp((v - beta) / s, 0, qp)) * s + beta
            else:  # by the norm (the absolute value for 0o); the direction (sign) is kept
                norm = v.norm(dim=-1, keepdim=True)
                qnorm = _round_ste(torch.clamp(norm / s, 0, qp)) * s
                nonzero = norm > 0
                factor = torch.where(nonzero, qnorm / torch.where(nonzero, norm, torch.ones_like(norm)),
                                     torch.ones_like(norm))
                q = v * factor
            out.append(q.reshape(*lead, mul * dim))
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return f"irreps={self.irreps}, bits={self.bits}"


def _quantize_irreps_inputs(module: nn.Module, args: tuple) -> tuple:
    quantizers = module.irreps_quantizers
    return tuple(quantizers[str(i)](a) if str(i) in quantizers else a for i, a in enumerate(args))


def _add_input_quantizers(module: nn.Module, irreps: Dict[int, o3.Irreps], bits: int) -> None:
    module.irreps_quantizers = nn.ModuleDict({str(i): IrrepsQuantizer(ir, bits) for i, ir in irreps.items()})
    module.register_forward_pre_hook(_quantize_irreps_inputs)


def _quantize_weight(module: nn.Module, bits: int) -> None:
    w = getattr(module, "weight", None)
    if isinstance(w, nn.Parameter) and w.numel() > 0:
        attach_lsq(module, bits, inputs=False)


def attach_irreps_quantizers(model: nn.Module, bits: int) -> List[str]:
    """Fake-quantize the e3nn layers of ``model`` equivariantly, **in place**.

    :func:`geo3d.efficiency.quantize` calls it on its own copy
    (``QuantConfig(method="qat_lsq", equivariant=True)``); call it yourself only on a model
    you own. Outermost e3nn modules get, by a forward pre-hook and an ``irreps_quantizers``
    child (an ``nn.ModuleDict`` keyed by argument position):

    * ``o3.Linear``: an :class:`IrrepsQuantizer` on its input; its weight (path weights)
      through the signed LSQ+ weight quantizer;
    * ``o3.TensorProduct`` (and subclasses): one on each of its two inputs; internal
      weights, if any, like ``o3.Linear``'s (external per-edge weights come from a radial
      MLP, quantized below);
    * ``e3nn.nn.Gate``: one on its input (scalars, gates and gated irreps);
    * ``e3nn.nn.FullyConnectedNet`` (radial MLPs, invariant): every layer's weight and
      input with the LSQ+ quantizers, like an ``nn.Linear``.

    Args:
        model: the model to modify.
        bits: bit width of every quantizer (2..8).

    Returns:
        The names of the quantized modules (a radial MLP's layers by their own names).
    """
    names: List[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for child_name, child in module.named_children():
            name = prefix + child_name
            if isinstance(child, o3.Linear):
                _add_input_quantizers(child, {0: child.irreps_in}, bits)
                _quantize_weight(child, bits)
            elif isinstance(child, o3.TensorProduct):
                _add_input_quantizers(child, {0: child.irreps_in1, 1: child.irreps_in2}, bits)
                _quantize_weight(child, bits)
            elif isinstance(child, enn.Gate):
                _add_input_quantizers(child, {0: child.irreps_in}, bits)
            elif isinstance(child, enn.FullyConnectedNet):
                for layer_name, layer in child.named_children():
                    if isinstance(getattr(layer, "weight", None), nn.Parameter):
                        attach_lsq(layer, bits)
                        names.append(f"{name}.{layer_name}")
                continue
            else:
                visit(name + ".", child)
                continue
            names.append(name)

    visit("", model)
    return names
