"""``profile``: params, MACs by kind, latency, peak memory and size of one forward pass.

Our own code on torch's tools, because no profiler counts message passing: dense MACs
come from ``torch.utils.flop_counter``'s formulas (its registry: ``mm``, ``addmm``,
``bmm``, convolutions, attention; FLOPs / 2) read by our own ``TorchDispatchMode``, which
also counts gathers and scatters. e3nn tensor products and neighbour searches run code
whose operation count is not what the kernels report (a dense Clebsch-Gordan ``einsum``,
scipy's kd-tree), so they are counted with the closed forms below while the counter
pauses inside them.

MAC kinds (:attr:`Profile.macs_breakdown`, they add up to :attr:`Profile.macs`):

* ``linear``: ``flop_counter`` formulas / 2 (Linear, conv, matmul, e3nn ``o3.Linear``);
  a sparse matrix times a dense one counts its stored entries times the output columns.
* ``gather_scatter``: one MAC per element moved: ``index_select``, ``gather`` and advanced
  indexing (``aten.index``) count their output (``E * F`` for ``x[edge_index[0]]``);
  ``scatter*``, ``index_add``, ``index_reduce``, ``index_put`` count their source.
* ``tensor_product``: every ``e3nn.o3.TensorProduct`` call, per batch row and instruction
  ``(l1, l2 -> l3)``: ``P * d1 * d2 * d3`` for the Clebsch-Gordan contraction plus
  ``W * d3`` for the path weights, ``d = 2l + 1``, ``P`` the products of multiplicities
  (``mul1 * mul2``; ``mul1`` for the ``uu*`` modes), ``W = prod(path_shape)`` (0 without
  weights).
* ``gem_kernel``: dense MACs inside a module whose class sets ``mac_category =
  "gem_kernel"`` (the GEM convolution); any module may set ``mac_category`` to another
  name to get its own row.
* ``search``: a model of the neighbour searches' work (``geo3d.geometry`` ``knn``,
  ``knn_graph``, ``radius``, ``radius_graph``, ``fps``, ``voxel_grid`` and DGCNN's
  ``feature_knn_graph``), in ``D``-dimensional points, per batch item of ``N`` points and
  ``M`` queries returning ``E`` pairs: kd-tree searches ``D * (N log2 N + M log2 N + E)``
  (build, descent, candidates); brute-force feature kNN (``D > 8``) ``M * N * D``; farthest
  point sampling ``M * N * D`` (the textbook algorithm); voxel grid ``N * D``.

Not counted: element-wise ops (activations, BatchNorm in eval, residual sums) and dense
reductions (DGCNN's ``amax`` over a ``[N, k, C]`` view).

Latency is the median wall time of ``repeats`` calls after ``warmup`` untimed ones, in
eval mode under ``torch.inference_mode``. Peak memory is measured in a fresh process (see
:func:`peak_memory_mib`). Size is the bytes of ``torch.save(model.state_dict())``, or of
the module's own ``serialized_size()`` where it defines one (compiled int8 modules).
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from unittest import mock

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

__all__ = ["Profile", "profile", "count_macs", "mac_breakdown", "latency_ms",
           "peak_memory_mib", "serialized_size", "nonzero_params", "MAC_KINDS"]

MAC_KINDS = ("linear", "gather_scatter", "tensor_product", "gem_kernel", "search")

_aten = torch.ops.aten
_GATHERS = {_aten.index_select, _aten.gather, _aten.index}
_SCATTERS = {getattr(_aten, name + suffix) for suffix in ("", "_")
             for name in ("scatter", "scatter_add", "scatter_reduce", "index_add",
                          "index_reduce", "index_put")} | {_aten._index_put_impl_}
_KDTREE_MAX_DIM = 8  # geo3d.models._layers.KDTREE_MAX_DIM: above it, brute force


# --------------------------------------------------------------------------- MAC counting


class _MacCounter(TorchDispatchMode):
    """Adds flop_counter MACs and gather/scatter elements to ``counts[kind]``."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Dict[str, int] = {k: 0 for k in MAC_KINDS}
        self.scopes: List[str] = []  # module categories entered (gem_kernel ...)
        self.paused = 0

    def add(self, kind: str, n: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + int(n)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:
            return out
        packet = func.overloadpacket
        if packet in flop_registry:
            kind = self.scopes[-1] if self.scopes else "linear"
            sparse = _sparse_product_macs(args, out)
            if sparse is not None:
                self.add(kind, sparse)
            else:
                self.add(kind, int(flop_registry[packet](*args, **kwargs, out_val=out)) // 2)
        elif packet in _GATHERS and isinstance(out, torch.Tensor):
            self.add("gather_scatter", out.numel())
        elif packet in _SCATTERS:
            sizes = [t.numel() for t in torch.utils._pytree.tree_leaves((args[1:], kwargs))
                     if isinstance(t, torch.Tensor)]
            self.add("gather_scatter", max(sizes, default=0))
        return out


def _sparse_product_macs(args: tuple, out: Any) -> Optional[int]:
    """MACs of a 2-D product with a sparse operand (``mm``, or ``addmm``'s last two
    arguments): each stored entry of the left factor meets every output column, each of
    the right factor every output row. None when no operand is sparse (the dense formula
    would count every zero of a sparse matrix)."""
    mats = [t for t in args if isinstance(t, torch.Tensor) and t.dim() == 2][-2:]
    if len(mats) < 2 or all(t.layout == torch.strided for t in mats) \
            or not isinstance(out, torch.Tensor) or out.dim() != 2:
        return None
    left, right = mats
    dense_macs = left.shape[0] * left.shape[1] * right.shape[1]
    if left.layout != torch.strided and right.layout != torch.strided:
        return min(int(left._nnz()) * right.shape[1], dense_macs)
    if left.layout != torch.strided:
        return int(left._nnz()) * out.shape[1]
    return int(right._nnz()) * out.shape[0]


def _item_sizes(n: int, batch: Optional[torch.Tensor]) -> List[int]:
    if batch is None or not isinstance(batch, torch.Tensor) or batch.numel() == 0:
        return [n]
    return torch.bincount(batch.detach().cpu()).tolist()


def _log2(n: int) -> int:
    return max(1, math.ceil(math.log2(max(n, 2))))


def _tree_macs(dim: int, xs: List[int], ys: List[int], edges: int) -> int:
    build = sum(n * _log2(n) for n in xs)
    descent = sum(m * _log2(n) for n, m in zip(xs, ys))
    return dim * (build + descent + edges)


def _search_cost(name: str, bound: inspect.BoundArguments, out: Any) -> int:
    """The work model of one neighbour search (see the module docstring)."""
    a = bound.arguments
    first = a.get("x", a.get("src", a.get("pos")))
    if not isinstance(first, torch.Tensor):
        return 0
    dim = 1 if first.dim() == 1 else first.shape[1]
    n = first.shape[0]
    if name == "voxel_grid":
        return n * dim
    if name == "_brute_knn":  # (x, k, ptr): every pair within an item
        ptr = list(a["ptr"])
        return dim * sum((e - s) ** 2 for s, e in zip(ptr[:-1], ptr[1:]))
    if name == "fps":
        batch = a.get("batch")
        sizes = _item_sizes(n, batch)
        kept = (torch.bincount(batch.detach().cpu()[out.cpu()], minlength=len(sizes)).tolist()
                if isinstance(batch, torch.Tensor) else [out.numel()])
        return dim * sum(nb * mb for nb, mb in zip(sizes, kept))
    edges = out.shape[1] if isinstance(out, torch.Tensor) and out.dim() == 2 else 0
    if name in ("knn", "radius"):
        y = a["y"]
        xs, ys = _item_sizes(n, a.get("batch_x")), _item_sizes(y.shape[0], a.get("batch_y"))
    else:  # knn_graph, radius_graph, feature_knn_graph: queries are the points
        xs = ys = _item_sizes(n, a.get("batch"))
    if name == "feature_knn_graph" and dim > _KDTREE_MAX_DIM:
        return dim * sum(nb * mb for nb, mb in zip(xs, ys))
    return _tree_macs(dim, xs, ys, edges)


def _search_targets() -> List[Tuple[Any, str, str]]:
    """``(module, attribute, kind)``: the searches, public and the private implementations
    (so a reference held outside geo3d's modules is counted too)."""
    import geo3d.geometry as g
    from geo3d.geometry import neighbors
    from geo3d.models import _layers

    public = {"knn": g.knn, "knn_graph": g.knn_graph, "radius": g.radius,
              "radius_graph": g.radius_graph, "fps": g.fps, "voxel_grid": g.voxel_grid,
              "feature_knn_graph": _layers.feature_knn_graph}
    by_id = {id(f): (name, f) for name, f in public.items()}
    targets = []
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name == "geo3d" or mod_name.startswith("geo3d.")):
            continue
        for attr, value in list(vars(module).items()):
            hit = by_id.get(id(value))
            if hit is not None and value is hit[1]:
                targets.append((module, attr, hit[0]))
    for name in ("knn", "knn_graph", "radius", "radius_graph", "fps"):
        targets.append((neighbors, "_" + name, name))
    targets.append((_layers, "_brute_knn", "_brute_knn"))
    return targets


@contextmanager
def _count_searches(counter: _MacCounter) -> Iterator[None]:
    """Wrap the searches: the counter pauses inside, the outermost call adds its model."""
    wrappers: Dict[int, Callable] = {}

    def wrap(name: str, fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        def counted(*a, **k):
            counter.paused += 1
            try:
                out = fn(*a, **k)
            finally:
                counter.paused -= 1
            if not counter.paused:
                counter.add("search", _search_cost(name, sig.bind(*a, **k), out))
            return out
        return counted

    with ExitStack() as stack:
        for module, attr, name in _search_targets():
            fn = getattr(module, attr)
            w = wrappers.setdefault(id(fn), wrap(name, fn))
            stack.enter_context(mock.patch.object(module, attr, w))
        yield


def tensor_product_macs(tp: nn.Module, batch: int) -> int:
    """MACs of one ``e3nn.o3.TensorProduct`` call on ``batch`` rows (module docstring)."""
    total = 0
    for ins in tp.instructions:
        m1, ir1 = tp.irreps_in1[ins.i_in1]
        m2, ir2 = tp.irreps_in2[ins.i_in2]
        ir3 = tp.irreps_out[ins.i_out].ir
        pairs = m1 if ins.connection_mode in ("uuu", "uuw") else m1 * m2
        weights = math.prod(ins.path_shape) if ins.has_weight else 0
        total += pairs * ir1.dim * ir2.dim * ir3.dim + weights * ir3.dim
    return batch * total


def _is_tensor_product(module: nn.Module) -> bool:
    try:
        from e3nn.o3 import TensorProduct
    except ImportError:  # pragma: no cover - e3nn is a dependency
        return False
    return isinstance(module, TensorProduct)


@contextmanager
def _scoped_modules(model: nn.Module, counter: _MacCounter) -> Iterator[None]:
    """Hooks: tensor products counted in closed form; ``mac_category`` modules scoped."""
    handles = []

    def tp_pre(module, args):
        counter.paused += 1

    def tp_post(module, args, out):
        counter.paused -= 1
        if not counter.paused:
            counter.add("tensor_product", tensor_product_macs(module, out.reshape(-1, out.shape[-1]).shape[0]))

    def scope_in(module, args) -> None:
        counter.scopes.append(module.mac_category)

    def scope_out(module, args, out) -> None:  # returns None: the output is left as it is
        counter.scopes.pop()

    for module in model.modules():
        if _is_tensor_product(module):
            handles += [module.register_forward_pre_hook(tp_pre),
                        module.register_forward_hook(tp_post, always_call=True)]
        elif isinstance(getattr(module, "mac_category", None), str):
            handles += [module.register_forward_pre_hook(scope_in),
                        module.register_forward_hook(scope_out, always_call=True)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def mac_breakdown(model: nn.Module, example: Any) -> Dict[str, int]:
    """MACs of one ``model(example)`` in eval mode, by kind (keys :data:`MAC_KINDS`).

    Args:
        model: any ``nn.Module``; its train/eval mode is restored afterwards.
        example: the forward input (a Tensor or a PyG ``Data``/``Batch``).

    Returns:
        ``{"linear", "gather_scatter", "tensor_product", "gem_kernel", "search", ...}``
        (plus any other ``mac_category`` a module declares) of ints.
    """
    counter = _MacCounter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _count_searches(counter), _scoped_modules(model, counter), counter:
            model(example)
    finally:
        model.train(was_training)
    return dict(counter.counts)


def count_macs(model: nn.Module, example: Any) -> int:
    """Total multiply-accumulates of one ``model(example)`` (the sum of :func:`mac_breakdown`)."""
    return sum(mac_breakdown(model, example).values())


# --------------------------------------------------------------------------- time, size


def latency_ms(model: nn.Module, example: Any, warmup: int = 2, repeats: int = 10) -> float:
    """Median wall milliseconds of ``model(example)`` in eval + inference mode.

    Args:
        model: any ``nn.Module`` (mode restored afterwards).
        example: the forward input.
        warmup: untimed calls first (default 2).
        repeats: timed calls (default 10); the median is returned.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(example)
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                model(example)
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times) * 1e3


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``; a submodule that defines
    ``serialized_size()`` (e.g. a compiled int8 block) reports its own bytes instead."""
    own = {name: m for name, m in model.named_modules()
           if name and callable(getattr(m, "serialized_size", None))}
    skip = tuple(name + "." for name in own)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    buf = io.BytesIO()
    torch.save(state, buf)
    return len(buf.getvalue()) + sum(int(m.serialized_size()) for m in own.values())


def nonzero_params(model: nn.Module) -> int:
    """Parameters that are not exactly zero."""
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


# --------------------------------------------------------------------------- peak memory


def _shrink(example: Any, n: int = 64) -> Any:
    """The first ``n`` points of ``example`` (a Tensor or a PyG Data/Batch), for warm-up."""
    if isinstance(example, torch.Tensor):
        return example[:n]
    num_nodes = getattr(example, "num_nodes", None)
    if num_nodes and hasattr(example, "subgraph"):
        keep = min(n, num_nodes)
        small = example.subgraph(torch.arange(keep))
        if hasattr(small, "batch") and small.batch is not None:  # keep graph ids 0..B-1
            small.batch = torch.zeros_like(small.batch)
        face = getattr(example, "face", None)
        if isinstance(face, torch.Tensor) and face.dim() == 2:  # a mesh: faces inside the cut
            small.face = face[:, (face < keep).all(dim=0)]
        return small
    return example


def _rss_kib(field: str) -> Optional[int]:
    """``VmRSS`` / ``VmHWM`` of this process in KiB from /proc (None where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child(payload_path: str) -> None:
    """Entry of the fresh process of :func:`peak_memory_mib`; prints MiB as JSON."""
    payload = torch.load(payload_path, weights_only=False)
    if payload["model"] is not None:
        model = payload["model"]
    else:
        from geo3d import models

        name, kwargs = payload["spec"]
        model = models.create(name, **kwargs)
        model.load_state_dict(payload["state_dict"])
    model.eval()
    example = payload["example"]
    del payload
    with torch.inference_mode():
        model(_shrink(example))
        if _reset_peak() and _rss_kib("VmHWM") is not None:
            before = _rss_kib("VmRSS")
            model(example)
            after, how = _rss_kib("VmHWM"), "VmHWM after clear_refs"
        else:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            model(example)
            after, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    print(json.dumps({"peak_memory_mib": (after - before) / 1024.0, "method": how}))


def peak_memory_mib(model: nn.Module, example: Any,
                    spec: Optional[Tuple[str, dict]] = None) -> Optional[float]:
    """Peak extra resident MiB of one inference, measured in a fresh Python process.

    After the model and the example are loaded and one warm-up forward on the first 64
    points has run, the kernel's peak-RSS mark is reset (``/proc/self/clear_refs`` = 5),
    the forward runs, and the result is ``VmHWM - VmRSS before`` (fallback: the increase
    of ``ru_maxrss``). It sees every allocation (torch, numpy, scipy's kd-trees).

    Args:
        model: sent to the child pickled, or rebuilt from ``spec`` plus its state_dict
            when it cannot be pickled (e3nn modules hold lambdas).
        example: the forward input.
        spec: ``(registry name, kwargs)`` (default None).

    Returns:
        MiB, or None when the model can neither be pickled nor rebuilt from ``spec``.
    """
    payload: Dict[str, Any] = {"model": None, "spec": spec, "state_dict": None,
                               "example": example}
    try:
        torch.save(model, io.BytesIO())
        payload["model"] = model
    except Exception:  # noqa: BLE001 - e3nn lambdas, compiled modules
        if spec is None:
            return None
        payload["state_dict"] = model.state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "payload.pt")
        torch.save(payload, path)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = f"from geo3d.efficiency.profile import _child; _child({path!r})"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_memory_mib"]


# --------------------------------------------------------------------------- Profile


@dataclasses.dataclass(frozen=True)
class Profile:
    """Cost of one forward pass (see the module docstring for each figure).

    Attributes:
        params: parameters.
        nonzero_params: parameters that are not exactly zero.
        macs: multiply-accumulates, the sum of ``macs_breakdown``.
        macs_breakdown: MACs per kind (:data:`MAC_KINDS`).
        latency_ms: median wall milliseconds (warm-up excluded); None when not timed.
        peak_memory_mib: peak extra resident MiB in a fresh process; None when skipped.
        size_bytes: serialized bytes.
        threads: ``torch.get_num_threads()`` during timing.
    """

    params: int
    nonzero_params: int
    macs: int
    macs_breakdown: Dict[str, int]
    latency_ms: Optional[float]
    peak_memory_mib: Optional[float]
    size_bytes: int
    threads: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        def num(v, unit=""):
            return "-" if v is None else (f"{v:,.3f}{unit}" if isinstance(v, float) else f"{v:,}{unit}")

        rows = [("params", num(self.params)), ("non-zero params", num(self.nonzero_params)),
                ("MACs", num(self.macs))]
        rows += [(f"  {k}", num(v)) for k, v in self.macs_breakdown.items()]
        rows += [("latency", num(self.latency_ms, " ms")),
                 ("peak memory", num(self.peak_memory_mib, " MiB")),
                 ("size", num(self.size_bytes, " B")), ("threads", num(self.threads))]
        width = max(len(r[0]) for r in rows)
        vwidth = max(len(r[1]) for r in rows)
        lines = [f"{'figure':<{width}} | {'value':>{vwidth}}", f"{'-' * width}-|-{'-' * vwidth}"]
        lines += [f"{k:<{width}} | {v:>{vwidth}}" for k, v in rows]
        return "\n".join(lines)


def profile(model: nn.Module, example: Any, *, warmup: int = 2, repeats: int = 10,
            memory: bool = True, spec: Optional[Tuple[str, dict]] = None) -> Profile:
    """Params, MACs by kind, CPU latency, peak memory and size of ``model(example)``.

    Args:
        model: any ``nn.Module``; it is not modified and its mode is restored.
        example: the forward input (a Tensor, or a PyG ``Data``/``Batch``).
        warmup: untimed calls before timing (default 2).
        repeats: timed calls, median reported (default 10); 0 skips timing.
        memory: measure peak memory in a fresh process (default True; a few seconds).
        spec: ``(registry name, kwargs)`` to rebuild unpicklable models (default None).

    Returns:
        A :class:`Profile`; ``print(profile(...))`` shows a table.

    Raises:
        InvalidInputError: ``model`` is not an ``nn.Module`` or ``repeats``/``warmup`` < 0.
    """
    from geo3d.errors import InvalidInputError

    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, v in (("warmup", warmup), ("repeats", repeats)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidInputError(f"{name} must be an integer >= 0, got {v!r}")
    breakdown = mac_breakdown(model, example)
    return Profile(
        params=sum(p.numel() for p in model.parameters()),
        nonzero_params=nonzero_params(model),
        macs=sum(breakdown.values()),
        macs_breakdown=breakdown,
        latency_ms=latency_ms(model, example, warmup, repeats) if repeats else None,
        peak_memory_mib=peak_memory_mib(model, example, spec) if memory else None,
        size_bytes=serialized_size(model),
        threads=torch.get_num_threads(),
    )
