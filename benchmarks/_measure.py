"""Shared helpers of the model benchmarks: cost of one model, and train-then-test.

``measure(model, example)`` reports, for one forward pass ``model(example)``:

* ``params``: ``sum(p.numel() for p in model.parameters())``.
* ``macs``: multiply-accumulates, ``macs_dense + gather_scatter``:

  - ``macs_dense``: the FLOPs of ``torch.utils.flop_counter``'s formulas (its registry:
    ``mm``, ``addmm``, ``bmm``, ``baddbmm``, convolutions, attention), divided by 2;
  - ``gather_scatter``: one MAC per element moved by the message-passing gathers and
    scatters, counted by our own ``TorchDispatchMode``: ``index_select``, ``gather`` and
    advanced indexing (``aten.index``) count the elements of their output (e.g. ``E * F``
    for ``x[edge_index[0]]``); ``scatter``, ``scatter_add``, ``scatter_reduce``,
    ``index_add``, ``index_reduce`` and ``index_put`` count the elements of their source
    (e.g. ``E * F`` for a sum of edge messages into nodes).

  NOT counted: element-wise ops (activations, the element-wise products inside e3nn's
  tensor products, BatchNorm in eval), dense reductions (``amax``/``sum`` over a
  ``[N, k, C]`` view, which is how geo3d's DGCNN aggregates when every point has ``k``
  neighbours), and everything run inside the neighbour searches (``knn``, ``knn_graph``,
  ``radius``, ``radius_graph``, ``fps``, ``voxel_grid`` and DGCNN's
  ``feature_knn_graph``, whose brute-force ``addmm`` would otherwise count): while the
  forward runs, every reference to these functions held by a ``geo3d.*`` module is
  wrapped so that the counter pauses inside them. A later issue adds
  ``geo3d.efficiency.profile`` with the search cost.
* ``latency_ms``: CPU wall time of ``model(example)`` in ``model.eval()`` under
  ``torch.inference_mode()``, median of ``repeats`` timed calls after ``warmup`` untimed
  ones, all threads torch uses (``torch.get_num_threads()``).
* ``peak_memory_mib``: peak extra resident memory of one inference, measured in a fresh
  Python process (``subprocess``): after the model and the example are loaded and one
  warm-up forward on the first 64 points has run (imports, lazy initialisation and thread
  pools are not counted), the kernel's peak-RSS mark is reset to the current RSS
  (``/proc/self/clear_refs`` = 5), the forward runs, and the result is ``VmHWM - VmRSS
  before``. Where /proc is unavailable it falls back to the increase of
  ``getrusage(RUSAGE_SELF).ru_maxrss``, which reads 0 whenever loading left a higher mark.
  It sees every allocation (torch, numpy, scipy's kd-trees), unlike ``tracemalloc``
  (blind to torch) or the torch profiler (blind to numpy/scipy). The model is sent to
  the child pickled, or, when it cannot be pickled (e3nn's models hold lambdas), rebuilt
  from ``spec=(registry name, kwargs)`` plus its ``state_dict``; without either, the
  value is None.
* ``size_bytes``: bytes of ``torch.save(model.state_dict())``.

Latency and memory vary with the machine's other load; the benchmarks print the core
count and torch's thread count beside them.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple
from unittest import mock

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["measure", "count_macs", "latency_ms", "peak_memory_mib", "serialized_size",
           "machine_info", "fit_and_test", "write_outputs", "fmt", "add_common_args",
           "tiny_kwargs", "cost_cells", "COST_HEADER"]

_aten = torch.ops.aten
_GATHERS = {_aten.index_select, _aten.gather, _aten.index}
_SCATTERS = {getattr(_aten, name + suffix) for suffix in ("", "_")
             for name in ("scatter", "scatter_add", "scatter_reduce", "index_add",
                          "index_reduce", "index_put")} | {_aten._index_put_impl_}


def _search_functions() -> list:
    import geo3d.geometry as g
    from geo3d.models import _layers

    return [g.knn, g.knn_graph, g.radius, g.radius_graph, g.fps, g.voxel_grid,
            _layers.feature_knn_graph]


class _MacCounter(TorchDispatchMode):
    """Counts dense MACs (flop_counter formulas / 2) and gather/scatter elements."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = 0
        self.gather_scatter = 0
        self.paused = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:
            return out
        packet = func.overloadpacket
        if packet in flop_registry:
            self.dense += int(flop_registry[packet](*args, **kwargs, out_val=out)) // 2
        elif packet in _GATHERS and isinstance(out, torch.Tensor):
            self.gather_scatter += out.numel()
        elif packet in _SCATTERS:
            sizes = [t.numel() for t in torch.utils._pytree.tree_leaves((args[1:], kwargs))
                     if isinstance(t, torch.Tensor)]
            self.gather_scatter += max(sizes, default=0)
        return out


@contextmanager
def _pause_in_searches(counter: _MacCounter) -> Iterator[None]:
    """Wrap every geo3d module's reference to a neighbour search so the counter pauses."""
    targets = {id(f): f for f in _search_functions()}
    wrappers: Dict[int, Callable] = {}

    def wrap(fn: Callable) -> Callable:
        def paused(*a, **k):
            counter.paused += 1
            try:
                return fn(*a, **k)
            finally:
                counter.paused -= 1
        return paused

    with ExitStack() as stack:
        for name, module in list(sys.modules.items()):
            if module is None or not (name == "geo3d" or name.startswith("geo3d.")):
                continue
            for attr, value in list(vars(module).items()):
                if id(value) in targets and value is targets[id(value)]:
                    w = wrappers.setdefault(id(value), wrap(value))
                    stack.enter_context(mock.patch.object(module, attr, w))
        yield


def count_macs(model: nn.Module, example: Any) -> Dict[str, int]:
    """``{"macs", "macs_dense", "gather_scatter"}`` of one ``model(example)`` (eval mode)."""
    counter = _MacCounter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _pause_in_searches(counter), counter:
            model(example)
    finally:
        model.train(was_training)
    return {"macs": counter.dense + counter.gather_scatter, "macs_dense": counter.dense,
            "gather_scatter": counter.gather_scatter}


def latency_ms(model: nn.Module, example: Any, warmup: int = 2, repeats: int = 10) -> float:
    """Median wall milliseconds of ``model(example)`` in eval + inference mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(example)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(example)
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times) * 1e3


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(buf.getvalue())


def _shrink(example: Any, n: int = 64) -> Any:
    """The first ``n`` points of ``example`` (a Tensor or a PyG Data/Batch), for warm-up."""
    if isinstance(example, torch.Tensor):
        return example[:n]
    num_nodes = getattr(example, "num_nodes", None)
    if num_nodes and hasattr(example, "subgraph"):
        small = example.subgraph(torch.arange(min(n, num_nodes)))
        if hasattr(small, "batch") and small.batch is not None:  # keep graph ids 0..B-1
            small.batch = torch.zeros_like(small.batch)
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
    """Peak extra resident MiB of one inference, in a fresh process (see module doc).

    Returns None when the model can neither be pickled nor rebuilt from ``spec``.
    """
    payload: Dict[str, Any] = {"model": None, "spec": spec, "state_dict": None,
                               "example": example}
    try:
        pickled = io.BytesIO()
        torch.save(model, pickled)
        payload["model"] = model
    except Exception:  # e.g. e3nn modules holding lambdas
        if spec is None:
            return None
        payload["state_dict"] = model.state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "payload.pt")
        torch.save(payload, path)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]))
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path],
                             capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_memory_mib"]


def measure(model: nn.Module, example: Any, *, spec: Optional[Tuple[str, dict]] = None,
            warmup: int = 2, repeats: int = 10, memory: bool = True) -> dict:
    """Params, MACs, CPU latency, peak memory and size of ``model(example)``.

    Args:
        model: Any ``nn.Module``; its train/eval mode is restored afterwards.
        example: The forward input (a Tensor, or a PyG ``Data``/``Batch``).
        spec: ``(registry name, kwargs)`` to rebuild the model in the memory child process
            when it cannot be pickled. Default None.
        warmup: Untimed calls before timing (default 2).
        repeats: Timed calls; the median is reported (default 10).
        memory: Measure peak memory (a fresh process: a few seconds). Default True.

    Returns:
        ``{"params", "macs", "macs_dense", "gather_scatter", "latency_ms",
        "peak_memory_mib", "size_bytes", "threads"}`` (see the module docstring).
    """
    out = {"params": sum(p.numel() for p in model.parameters())}
    out.update(count_macs(model, example))
    out["latency_ms"] = latency_ms(model, example, warmup, repeats)
    out["peak_memory_mib"] = peak_memory_mib(model, example, spec) if memory else None
    out["size_bytes"] = serialized_size(model)
    out["threads"] = torch.get_num_threads()
    return out


# --------------------------------------------------------------------------- benchmark runs


def machine_info() -> dict:
    return dict(cores=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                torch_threads=torch.get_num_threads(), platform=platform.platform())


def _seconds_per_step(model: nn.Module, dataset: Sequence, batch_size: int) -> float:
    """Seconds of one optimizer step, timed on a throw-away copy (after one warm-up)."""
    from torch_geometric.loader import DataLoader

    probe = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    batches = iter(DataLoader(list(dataset)[: 2 * batch_size], batch_size=batch_size))
    times = []
    for batch in batches:
        t0 = time.perf_counter()
        opt.zero_grad()
        probe.loss(probe(batch), batch).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times[-1]


def fit_and_test(name: str, kwargs: dict, train_set: Sequence, val_set: Sequence,
                 test_sets: Dict[str, Sequence], *, minutes: float, batch_size: int,
                 lr: float, seed: int, class_names: Sequence[str],
                 example: Any, repeats: int = 10, memory: bool = True) -> dict:
    """Train registry model ``name`` for ``minutes``, evaluate it, and :func:`measure` it.

    The cosine schedule is sized to the time budget: one throw-away step is timed and the
    number of epochs is chosen so that ``epochs * steps_per_epoch`` steps take about
    ``minutes``; ``TrainConfig.max_minutes`` stops training at the budget in any case.
    Validation runs once, at the end; the returned model is the last one.

    Returns:
        ``{"model", "kwargs", "train": {...}, "val": metrics, "test": {name: metrics},
        "cost": measure(...)}``.
    """
    from geo3d import models
    from geo3d.tasks import TrainConfig, evaluate, seed_everything, train

    seed_everything(seed)
    model = models.create(name, **kwargs)
    step_s = _seconds_per_step(model, train_set, batch_size)
    steps_per_epoch = max(1, math.ceil(len(train_set) / batch_size))
    epochs = max(1, int(minutes * 60 / step_s / steps_per_epoch))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         max_minutes=minutes, progress=False, tensorboard=False,
                         eval_every=epochs, warmup_steps=min(10, epochs * steps_per_epoch // 10),
                         grad_clip=10.0, device="cpu")
    t0 = time.perf_counter()
    result = train(model, train_set, config, val_dataset=val_set, class_names=class_names,
                   num_classes=len(class_names))
    train_minutes = (time.perf_counter() - t0) / 60
    tests = {key: evaluate(model, ds, batch_size=batch_size, num_classes=len(class_names),
                           class_names=class_names) for key, ds in test_sets.items()}
    cost = measure(model, example, spec=(name, kwargs), repeats=repeats, memory=memory)
    return {"model": name, "kwargs": kwargs,
            "train": {"minutes": train_minutes, "budget_minutes": minutes, "epochs": result.epochs,
                      "planned_epochs": epochs, "steps": result.steps, "stopped": result.stopped,
                      "seconds_per_step_probe": step_s, "batch_size": batch_size, "lr": lr,
                      "final_loss": next((r["loss"] for r in reversed(result.history)
                                          if r.get("split") == "train"), None)},
            "val": result.final, "test": tests, "cost": cost}


TINY_KWARGS = {  # --tiny: the smallest sensible widths (smoke tests), by model family
    "dgcnn": dict(width=8, emb_channels=16, k=4, head_channels=(16,)),
    "pointnet2": dict(width=4, max_neighbors=4, head_channels=(8,)),
    "equivariant": dict(width=2, lmax=1, depth=1, num_basis=4, radial_hidden=4,
                        head_hidden=8),
}


def tiny_kwargs(name: str) -> dict:
    return dict(TINY_KWARGS[name.rsplit("_", 1)[0]])


def resolve_common(ap, args, known_models) -> tuple:
    """Check ``--models`` against ``known_models``; return (models, minutes, repeats)."""
    models = args.models or list(known_models)
    unknown = sorted(set(models) - set(known_models))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {list(known_models)}")
    minutes = args.minutes if args.minutes is not None else (1.0 if args.quick else 20.0)
    repeats = args.repeats or (3 if args.quick else 10)
    return models, minutes, repeats


def add_common_args(ap, default_out: str) -> None:
    """Options shared by the model benchmarks (hidden ones are for the smoke tests)."""
    import argparse

    ap.add_argument("--out", default=default_out, help="output folder (default: %(default)s)")
    ap.add_argument("--quick", action="store_true",
                    help="small data, ~1 minute of training per model")
    ap.add_argument("--models", nargs="+", default=None, help="subset of the models")
    ap.add_argument("--minutes", type=float, default=None,
                    help="training budget per model and task (default 20; --quick 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of data, weights and shuffling")
    ap.add_argument("--batch-size", type=int, default=None, help="training batch size")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    ap.add_argument("--repeats", type=int, default=None, help="timed latency repeats")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child process")
    for name in ("--train-size", "--val-size", "--test-size", "--num-points"):
        ap.add_argument(name, type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)


def cost_cells(cost: dict) -> str:
    """Markdown cells: params | MMACs | latency ms | peak MiB | size MB."""
    return (f"{cost['params']:,} | {fmt(cost['macs'], 1, 1e-6)} | {fmt(cost['latency_ms'])} | "
            f"{fmt(cost['peak_memory_mib'])} | {fmt(cost['size_bytes'], 2, 1e-6)}")


COST_HEADER = "params | MMACs | latency ms | peak MiB | size MB"


def fmt(value: Optional[float], digits: int = 1, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.{digits}f}"


def write_outputs(out_dir: str, stem: str, result: dict, markdown: str) -> None:
    """Write ``stem.json`` and ``stem.md`` atomically into ``out_dir``."""
    from geo3d.io.atomic import atomic_write_bytes  # heavy import (open3d): only now

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / f"{stem}.json", json.dumps(result, indent=2, default=str).encode())
    atomic_write_bytes(out / f"{stem}.md", markdown.encode())
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')}")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    _child(sys.argv[2])
