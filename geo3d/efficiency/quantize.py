"""``quantize``: int8 post-training quantization (PT2E) and LSQ+ quantization-aware training.

* ``ptq_int8``: torchao's PT2E flow (``torchao.quantization.pt2e``: ``prepare_pt2e`` /
  ``convert_pt2e`` with ``X86InductorQuantizer``; static, per-channel int8 weights, uint8
  activations), then ``torch.compile`` with ``torch._inductor.config.freezing = True``,
  which lowers the quantized patterns to oneDNN int8 kernels (measured on this machine:
  without freezing there is no speed-up). A whole geo3d model cannot be exported (its
  graph comes from data-dependent neighbour searches), so the unit is the *MLP block*:
  every ``nn.Sequential`` made only of ``Linear``/``BatchNorm1d``/activations/``Dropout``
  (EdgeConv and PointNet message MLPs, embeddings, propagation MLPs, heads), and every e3nn
  ``FullyConnectedNet`` (the equivariant model's per-edge radial MLPs), first replaced by
  the equivalent ``nn.Sequential`` of ``Linear``/activation (e3nn's ``1 / sqrt(fan_in)``
  and activation constants folded into the weights: :mod:`geo3d.efficiency._e3nn_fc`;
  they read invariant edge lengths, so equivariance is not at stake). Each block
  has its BatchNorms folded into the linear layers (``torch.nn.utils.fusion``), is
  exported with a dynamic row count, calibrated on the inputs it sees while the float
  model runs on ``calibration``, converted and compiled. Everything else stays float and
  is listed in :attr:`QuantReport.float_modules`; inside the blocks, the graph ops that
  do not read a dequantized input are listed in :attr:`QuantReport.float_ops`.
* ``qat_lsq``: LSQ+ (Bhalgat, Lee, Nagel, Blankevoort & Kwak, "LSQ+: Improving low-bit
  quantization through learnable offsets and better initialization", CVPRW 2020), our
  own code (no maintained library implements it for arbitrary modules): every
  ``nn.Linear`` gets a fake-quantized weight (symmetric, learnable scale; a
  ``torch.nn.utils.parametrize`` parametrization, so code that reads ``.weight`` directly,
  like EdgeConv's split first layer, sees it too) and fake-quantized inputs (asymmetric,
  learnable scale and offset). Rounding uses the straight-through estimator; scale and
  offset gradients are multiplied by ``g = 1 / sqrt(numel * Q_p)`` (LSQ's gradient
  scale). Initialisation as in the paper: weights ``s = max(|mu - 3 sigma|, |mu + 3
  sigma|) / 2^(b-1)``; activations from the first batch's range, ``s = (max - min) /
  (Q_p - Q_n)``, ``beta = min - Q_n s``. Then the model trains on ``model.loss`` for
  ``steps`` steps. The last ``nn.Linear`` (the logits) keeps ``last_layer_bits``.
  Bits can differ per layer: ``layer_bits`` gives them explicitly, ``target_bits`` has
  them chosen by sensitivity on the calibration batches
  (:mod:`geo3d.efficiency.mixed_precision`). ``equivariant=True`` also quantizes the
  e3nn layers, features by irreps (invariant scalars per channel, vectors and tensors
  by their norm) so equivariance holds (:mod:`geo3d.efficiency.equivariant_quant`).

Both return a new model; the input is never modified.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils._python_dispatch import _get_current_dispatch_mode
from torch.utils.hooks import RemovableHandle

from geo3d.efficiency._batches import cycle_batches
from geo3d.errors import InvalidInputError

__all__ = ["QuantConfig", "QuantReport", "quantize", "LSQQuantizer", "QuantizedBlock", "attach_lsq",
           "detach_lsq"]

_METHODS = ("ptq_int8", "qat_lsq")
_BLOCK_LAYERS = (nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.GELU,
                 nn.Dropout, nn.Identity, nn.Tanh, nn.Sigmoid)


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    """How to quantize.

    Args:
        method: ``"ptq_int8"`` (default) or ``"qat_lsq"``.
        bits: ``qat_lsq`` bit width of weights and activations: 8 (default), 4 or 2;
            ``ptq_int8`` needs 8.
        compile: ``ptq_int8``: compile the converted blocks with inductor (default True;
            False runs the quantize/dequantize graph in eager, for numerics only).
        calibration_batches: ``ptq_int8``: at most this many batches calibrate (default 8);
            ``qat_lsq`` with ``target_bits``: the first this many batches measure the
            sensitivity.
        steps: ``qat_lsq`` training steps (default 200).
        lr: ``qat_lsq`` Adam learning rate of weights, scales and offsets (default 1e-3).
        last_layer_bits: ``qat_lsq`` bits of the last ``nn.Linear`` (the logits), default
            8; None quantizes it at ``bits`` too. Layers named in ``layer_bits`` or chosen
            by ``target_bits`` ignore it.
        layer_bits: ``qat_lsq`` explicit bits (8, 4 or 2) of weights and inputs per
            ``nn.Linear``, by module name (``model.named_modules()``), e.g.
            ``{"head.0": 4}``; unnamed layers get ``bits`` / ``last_layer_bits``. Default
            None. A name that matches no ``nn.Linear`` is refused by :func:`quantize`.
        target_bits: ``qat_lsq`` mixed precision: the bits (8, 4 or 2) of every
            ``nn.Linear`` are chosen by :func:`~geo3d.efficiency.mixed_precision.sensitivity`
            on the first ``calibration_batches`` batches so that the parameter-weighted
            mean weight bits are ``<= target_bits`` (in ``[2, 8]``), then LSQ+ QAT trains
            with them. Default None. Not with ``layer_bits``.
        equivariant: ``qat_lsq`` also quantizes the e3nn layers (``o3.Linear``, tensor
            products, gates, radial MLPs) so that equivariance is kept: irreps inputs by
            :class:`~geo3d.efficiency.equivariant_quant.IrrepsQuantizer`, e3nn weights
            with the LSQ+ weight quantizer, at ``bits``. Default False (only
            ``nn.Linear``).
    """

    method: str = "ptq_int8"
    bits: int = 8
    compile: bool = True
    calibration_batches: int = 8
    steps: int = 200
    lr: float = 1e-3
    last_layer_bits: Optional[int] = 8
    layer_bits: Optional[Mapping[str, int]] = None
    target_bits: Optional[float] = None
    equivariant: bool = False

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise InvalidInputError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.bits not in (2, 4, 8) or isinstance(self.bits, bool):
            raise InvalidInputError(f"bits must be 8, 4 or 2, got {self.bits!r}")
        if self.method == "ptq_int8" and self.bits != 8:
            raise InvalidInputError(f"method='ptq_int8' needs bits=8, got {self.bits}")
        if self.last_layer_bits is not None and (self.last_layer_bits not in (2, 4, 8)
                                                 or isinstance(self.last_layer_bits, bool)):
            raise InvalidInputError(f"last_layer_bits must be None, 8, 4 or 2, got {self.last_layer_bits!r}")
        for name in ("steps", "calibration_batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidInputError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise InvalidInputError(f"lr must be a finite positive number, got {self.lr!r}")
        if not isinstance(self.compile, bool):
            raise InvalidInputError(f"compile must be a bool, got {self.compile!r}")
        if not isinstance(self.equivariant, bool):
            raise InvalidInputError(f"equivariant must be a bool, got {self.equivariant!r}")
        for name in ("layer_bits", "target_bits", "equivariant"):
            if getattr(self, name) not in (None, False) and self.method != "qat_lsq":
                raise InvalidInputError(f"{name} needs method='qat_lsq', got method={self.method!r}")
        if self.layer_bits is not None and self.target_bits is not None:
            raise InvalidInputError("give layer_bits or target_bits, not both")
        if self.layer_bits is not None:
            if not isinstance(self.layer_bits, Mapping) or not self.layer_bits:
                raise InvalidInputError(f"layer_bits must be a non-empty dict of layer name -> bits, "
                                        f"got {self.layer_bits!r}")
            bad = {k: v for k, v in self.layer_bits.items()
                   if not isinstance(k, str) or isinstance(v, bool) or v not in (2, 4, 8)}
            if bad:
                raise InvalidInputError(f"layer_bits must map layer names (str) to 8, 4 or 2, got {bad!r}")
            # a copy: the caller's dict may change later
            object.__setattr__(self, "layer_bits", dict(self.layer_bits))
        t = self.target_bits
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 2 <= t <= 8):
            raise InvalidInputError(f"target_bits must be None or a number in [2, 8], got {t!r}")


@dataclasses.dataclass
class QuantReport:
    """What was quantized (attached to the result as ``model.quant_report``).

    Attributes:
        method: the config's method.
        bits: weight/activation bits.
        quantized: names of the quantized modules (blocks, or Linears for LSQ+).
        float_modules: names of the modules with parameters that stay float, and of the
            e3nn tensor products and gates (no parameters of their own) that do.
        float_ops: ``"block: op"`` for every op of a converted block that runs in float
            (neither reading a dequantized int8 tensor nor an activation fused into the
            int8 linear before it), e.g. a BatchNorm that opens a block.
        layer_bits: the bits of every quantized module (``quantized``), by name.
        sensitivity: with ``target_bits``, the loss increase per ``nn.Linear`` and bit
            width that chose ``layer_bits`` (see ``mixed_precision.sensitivity``), else None.
    """

    method: str
    bits: int
    quantized: List[str]
    float_modules: List[str]
    float_ops: List[str] = dataclasses.field(default_factory=list)
    layer_bits: Dict[str, int] = dataclasses.field(default_factory=dict)
    sensitivity: Optional[Dict[str, Dict[int, float]]] = None


def quantize(model: nn.Module, config: QuantConfig, calibration: Any) -> nn.Module:
    """Return a quantized copy of ``model`` (the input is left untouched).

    Args:
        model: a float32 geo3d model (any ``nn.Module`` with MLP blocks / ``nn.Linear``).
        config: a :class:`QuantConfig`.
        calibration: one input (``Data``/``Batch``/Tensor) or an iterable of them:
            ``ptq_int8`` calibrates on them, ``qat_lsq`` trains on them (cycled; the model
            needs ``loss(outputs, batch)``).

    Returns:
        The quantized model, in eval mode for ``ptq_int8`` (it is inference-only) and in
        ``model``'s mode for ``qat_lsq``; ``result.quant_report`` is a :class:`QuantReport`.

    Raises:
        InvalidInputError: bad config or data, a model that is not float32, one with
            nothing to quantize, ``layer_bits`` names that match no ``nn.Linear``, or
            ``equivariant=True`` on a model without e3nn layers.
    """
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, QuantConfig):
        raise InvalidInputError(f"config must be a QuantConfig, got {type(config).__name__}")
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if dtypes - {torch.float32}:
        raise InvalidInputError(f"model must be float32 to quantize, got parameters of {sorted(map(str, dtypes))}")
    batches = cycle_batches(calibration, "calibration")
    if config.method == "ptq_int8":
        return _ptq_int8(model, config, list(itertools.islice(batches, config.calibration_batches)))
    return _qat_lsq(model, config, batches)


# --------------------------------------------------------------------------- PTQ int8


def _is_block(m: nn.Module) -> bool:
    return (isinstance(m, nn.Sequential) and len(m) > 0
            and all(isinstance(c, _BLOCK_LAYERS) for c in m)
            and any(isinstance(c, nn.Linear) for c in m))


def mlp_blocks(model: nn.Module) -> List[Tuple[str, nn.Sequential]]:
    """The outermost MLP blocks of ``model`` (``nn.Sequential`` of linear/norm/activation)."""
    found: List[Tuple[str, nn.Sequential]] = []

    def visit(prefix: str, m: nn.Module) -> None:
        for name, child in m.named_children():
            full = f"{prefix}{name}"
            if _is_block(child):
                found.append((full, child))
            else:
                visit(full + ".", child)

    visit("", model)
    return found


def _fold(block: nn.Sequential) -> nn.Sequential:
    """An eval copy with each ``Linear -> BatchNorm1d`` folded into one ``Linear``."""
    from torch.nn.utils.fusion import fuse_linear_bn_eval

    mods = [copy.deepcopy(m).eval() for m in block if not isinstance(m, (nn.Dropout, nn.Identity))]
    out: List[nn.Module] = []
    for m in mods:
        if isinstance(m, nn.BatchNorm1d) and out and isinstance(out[-1], nn.Linear):
            out[-1] = fuse_linear_bn_eval(out[-1], m)
        else:
            out.append(m)
    return nn.Sequential(*out).eval()


def _bucket(rows: int) -> int:
    """The smallest ``m * 2^e >= rows`` with ``m`` in 8..15 (at most 1/8 padding)."""
    if rows <= 16:
        return rows
    e = rows.bit_length() - 4
    return -(-rows // (1 << e)) << e


class QuantizedBlock(nn.Module):
    """A converted PT2E block, compiled by inductor with freezing when ``compiled``.

    Each row count gets its own kernels, compiled from the graph by
    ``torch._inductor.compile`` (static shapes measured faster than one dynamic-shape
    graph). Not through ``torch.compile``: dynamo guards on the grad / inference mode
    too, and a block called under ``no_grad``, ``inference_mode`` and with gradients, at
    a few row counts, passed its recompile limit and fell back to the slow reference
    graph. Rows are padded with zeros up to a bucket (``m * 2^e``, ``m`` in 8..15: at most
    1/8 extra rows) and the padding is sliced off, so a stream of varying clouds compiles
    a handful of shapes, not one per cloud.

    Shapes:
        ``[R, C_in] -> [R, C_out]`` like the float block it replaces.
    """

    def __init__(self, graph: nn.Module, compiled: bool) -> None:
        super().__init__()
        self.graph = graph
        self.compiled = compiled
        self._kernels: Dict[tuple, Callable] = {}  # (padded rows, dtype) -> compiled graph

    def __getstate__(self) -> dict:  # compiled kernels are not copied or pickled
        state = self.__dict__.copy()
        state["_kernels"] = {}
        return state

    def train(self, mode: bool = True) -> "QuantizedBlock":
        """Only the flag changes: the converted graph is inference-only (its BatchNorms
        are folded, its dropout gone), and exported graphs refuse ``train()``/``eval()``."""
        self.training = mode
        return self

    def _kernel(self, x: Tensor) -> Callable:
        key = (x.shape[0], x.dtype)
        fn = self._kernels.get(key)
        if fn is None:
            import torch._inductor
            import torch._inductor.config as inductor_config

            with inductor_config.patch(freezing=True), torch.no_grad():
                # inductor rewrites the graph it compiles (tuple outputs): give it a copy
                fn = torch._inductor.compile(copy.deepcopy(self.graph), [x])
            self._kernels[key] = fn
        return fn

    def forward(self, x: Tensor) -> Tensor:
        rows = x.shape[0]
        if rows < 2:  # the export's dynamic row count starts at 2: pad
            return self.graph(torch.cat([x, x.new_zeros(2 - rows, x.shape[1])]))[:rows]
        if not self.compiled or _get_current_dispatch_mode() is not None:
            return self.graph(x)  # a dispatch mode (the MAC counter) sees the ops here
        padded = _bucket(rows)
        if padded != rows:
            x = torch.cat([x, x.new_zeros(padded - rows, x.shape[1])])
        x = x.contiguous()  # the kernels assume the strides they were compiled for
        out = self._kernel(x)(x)
        return (out[0] if isinstance(out, (list, tuple)) else out)[:rows]

    def serialized_size(self) -> int:
        """Bytes of the tensors the converted graph reads (int8 weights, scales, biases)."""
        seen, total = set(), 0
        for node in self.graph.graph.nodes:
            if node.op != "get_attr":
                continue
            t = self.graph
            for part in node.target.split("."):
                t = getattr(t, part)
            if isinstance(t, Tensor) and id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
        return total


_UNARY = {"relu", "leaky_relu", "silu", "gelu", "tanh", "sigmoid", "hardtanh"}


def _float_ops(graph: nn.Module, name: str) -> List[str]:
    """Ops of a converted block that run in float.

    An op runs int8 when its first input is dequantized (a quantized linear), or when it
    is a unary activation right after such a linear (inductor fuses it as a oneDNN post-op).
    """
    q = torch.ops.quantized_decomposed
    qdq = {q.quantize_per_tensor.default, q.dequantize_per_tensor.default,
           q.quantize_per_channel.default, q.dequantize_per_channel.default}
    int8 = set()
    out = []
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target in qdq:
            continue
        op = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        first = next((a for a in node.args if isinstance(a, torch.fx.Node)), None)
        if first is not None and first.op == "call_function" and first.target in qdq:
            int8.add(node)
        elif op in _UNARY and first in int8 and len(first.users) == 1:
            int8.add(node)
        else:
            out.append(f"{name}: {op}")
    return out


def _ptq_int8(model: nn.Module, config: QuantConfig, calib: List[Any]) -> nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    out = copy.deepcopy(model).eval()
    _e3nn_mlps_as_blocks(out)
    blocks = mlp_blocks(out)
    if not blocks:
        raise InvalidInputError(
            f"ptq_int8 found no MLP block (nn.Sequential of Linear/BatchNorm1d/activations) in "
            f"{type(model).__name__}: nothing to quantize")
    captured: dict = {name: [] for name, _ in blocks}
    hooks = [blk.register_forward_pre_hook(
        lambda m, args, name=name: captured[name].append(args[0].detach().clone()))
        for name, blk in blocks]
    try:
        with torch.no_grad():
            for batch in calib:
                out(batch)
    finally:
        for h in hooks:
            h.remove()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    report = QuantReport("ptq_int8", 8, [], [])
    for name, blk in blocks:
        inputs = [x for x in captured[name] if x.dim() == 2 and x.shape[0] >= 2]
        if not inputs:
            continue  # never ran on calibration data: stays float
        folded = _fold(blk)
        rows = torch.export.Dim("rows", min=2)
        exported = torch.export.export(folded, (inputs[0],), dynamic_shapes=({0: rows},))
        prepared = prepare_pt2e(exported.module(), quantizer)
        with torch.no_grad():
            for x in inputs:
                prepared(x)
        converted = convert_pt2e(prepared)
        report.float_ops += _float_ops(converted, name)
        _set_child(out, name, QuantizedBlock(converted, config.compile))
        report.quantized.append(name)
    if not report.quantized:
        raise InvalidInputError("ptq_int8: no MLP block ran on the calibration data")
    report.float_modules = _float_modules(out, report.quantized)
    report.layer_bits = {name: 8 for name in report.quantized}
    out.quant_report = report
    return out


def _e3nn_mlps_as_blocks(model: nn.Module) -> None:
    """Replace every e3nn ``FullyConnectedNet`` of ``model`` that has an equivalent
    ``nn.Sequential`` (:func:`~geo3d.efficiency._e3nn_fc.as_sequential`) by it, in place."""
    from e3nn.nn import FullyConnectedNet

    from geo3d.efficiency._e3nn_fc import as_sequential

    for name, m in list(model.named_modules()):
        seq = as_sequential(m) if isinstance(m, FullyConnectedNet) else None
        if seq is not None:
            _set_child(model, name, seq)


def _set_child(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _float_modules(model: nn.Module, quantized: List[str]) -> List[str]:
    """Modules outside ``quantized`` with parameters, or e3nn tensor products and gates
    (their weights come from elsewhere; not those inside a listed gate)."""
    from e3nn import nn as enn
    from e3nn import o3

    prefixes = tuple(q + "." for q in quantized)
    out: List[str] = []
    for name, m in model.named_modules():
        if not name or name in quantized or name.startswith(prefixes) or isinstance(m, LSQQuantizer):
            continue
        e3nn_op = isinstance(m, (o3.TensorProduct, enn.Gate)) \
            and not name.startswith(tuple(n + "." for n in out))
        if e3nn_op or any(True for _ in m.parameters(recurse=False)):
            out.append(name)
    return out


# --------------------------------------------------------------------------- LSQ+


class _GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def _round_ste(x: Tensor) -> Tensor:
    return (x.round() - x).detach() + x


class LSQQuantizer(nn.Module):
    """LSQ+ fake quantizer: ``round(clamp((x - beta) / s, Q_n, Q_p)) * s + beta``.

    Args:
        bits: bit width (2, 4 or 8).
        signed: weights (default True): symmetric signed range ``[-2^(b-1), 2^(b-1) - 1]``,
            no offset. Activations (False): ``[0, 2^b - 1]`` with a learnable offset ``beta``.

    The scale (and offset) are initialised on the first call (see the module docstring);
    their gradients are scaled by ``1 / sqrt(numel * Q_p)``.
    """

    def __init__(self, bits: int, signed: bool) -> None:
        super().__init__()
        self.bits, self.signed = bits, signed
        self.qn = -(2 ** (bits - 1)) if signed else 0
        self.qp = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.offset = nn.Parameter(torch.tensor(0.0), requires_grad=not signed)
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        if self.signed:
            mu, sigma = x.mean(), x.std() if x.numel() > 1 else x.abs().mean()
            s = torch.maximum((mu - 3 * sigma).abs(), (mu + 3 * sigma).abs()) / 2 ** (self.bits - 1)
            self.offset.zero_()
        else:
            lo, hi = x.min(), x.max()
            s = (hi - lo) / (self.qp - self.qn)
            self.offset.copy_(lo - self.qn * s.clamp_min(1e-8))
        self.scale.copy_(s.clamp_min(1e-8))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized):
            self._init(x.detach())
        g = 1.0 / math.sqrt(max(1, x.numel()) * self.qp)
        s = _GradScale.apply(self.scale, g).abs().clamp_min(1e-8)
        beta = _GradScale.apply(self.offset, g) if not self.signed else self.offset.detach()
        q = _round_ste(torch.clamp((x - beta) / s, self.qn, self.qp))
        return q * s + beta

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"


def _quantize_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quantizer(args[0]),) + tuple(args[1:])


def attach_lsq(module: nn.Module, bits: int, inputs: bool = True) -> Optional[RemovableHandle]:
    """Fake-quantize ``module.weight`` (signed LSQ+) and its first input (unsigned), in place.

    The weight gets a ``parametrize`` parametrization, the input an ``input_quantizer``
    child applied by a forward pre-hook. Both initialise on the first forward call.

    Args:
        module: a module with a ``weight`` parameter read in ``forward`` (``nn.Linear``,
            e3nn ``o3.Linear`` or radial-MLP layer); modified in place.
        bits: bit width.
        inputs: also quantize the first positional input (default True).

    Returns:
        The hook's handle (None when ``inputs`` is False); :func:`detach_lsq` undoes it all.
    """
    parametrize.register_parametrization(module, "weight", LSQQuantizer(bits, signed=True))
    if not inputs:
        return None
    module.input_quantizer = LSQQuantizer(bits, signed=False)
    return module.register_forward_pre_hook(_quantize_input)


def detach_lsq(module: nn.Module, handle: Optional[RemovableHandle]) -> None:
    """Undo :func:`attach_lsq`: the float weight is back, the input quantizer gone."""
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    if handle is not None:
        handle.remove()
        del module.input_quantizer


def _linear_bits(model: nn.Module, names: List[str], config: QuantConfig,
                 calibration: List[Any]) -> Tuple[Dict[str, int], Optional[dict]]:
    """The bits of each ``nn.Linear`` (``names``, in order) and the sensitivity used."""
    if config.target_bits is not None:
        from geo3d.efficiency.mixed_precision import choose_bits, sensitivity

        sens = sensitivity(model, calibration)
        params = {n: model.get_submodule(n).weight.numel() for n in names}
        return choose_bits(sens, params, config.target_bits), sens
    bits = {n: config.bits for n in names}
    if names and config.last_layer_bits is not None:
        bits[names[-1]] = config.last_layer_bits
    unknown = sorted(set(config.layer_bits or ()) - set(names))
    if unknown:
        raise InvalidInputError(f"layer_bits names {unknown} match no nn.Linear of {type(model).__name__} "
                                f"(its nn.Linear layers: {names})")
    bits.update(config.layer_bits or {})
    return bits, None


def _qat_lsq(model: nn.Module, config: QuantConfig, batches: Iterable) -> nn.Module:
    if not callable(getattr(model, "loss", None)):
        raise InvalidInputError("method='qat_lsq' trains the model: it needs loss(outputs, batch)")
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names and not config.equivariant:
        raise InvalidInputError(f"qat_lsq found no nn.Linear in {type(model).__name__}: nothing to quantize")
    calib = [] if config.target_bits is None else list(itertools.islice(batches, config.calibration_batches))
    bits, sens = _linear_bits(model, names, config, calib)
    out = copy.deepcopy(model)
    was = out.training
    for name in names:
        attach_lsq(out.get_submodule(name), bits[name])
    quantized = list(names)
    if config.equivariant:
        from geo3d.efficiency.equivariant_quant import attach_irreps_quantizers

        e3nn_names = attach_irreps_quantizers(out, config.bits)
        if not e3nn_names:
            raise InvalidInputError(f"equivariant=True found no e3nn layer (o3.Linear, TensorProduct, Gate, "
                                    f"FullyConnectedNet) in {type(model).__name__}")
        quantized += e3nn_names
        bits.update({n: config.bits for n in e3nn_names})
    opt = torch.optim.Adam(out.parameters(), lr=config.lr)
    out.train()
    for _, batch in zip(range(config.steps), batches):
        opt.zero_grad()
        out.loss(out(batch), batch).backward()
        opt.step()
    out.train(was)
    out.quant_report = QuantReport("qat_lsq", config.bits, quantized,
                                   [n for n in _float_modules(out, quantized)
                                    if not n.endswith(("parametrizations.weight", "input_quantizer"))
                                    and ".parametrizations." not in n],
                                   layer_bits={n: bits[n] for n in quantized}, sensitivity=sens)
    return out
