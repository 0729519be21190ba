"""Shared helpers of the model benchmarks: cost of one model, and train-then-test.

The measurements live in :mod:`geo3d.efficiency.profile` (MACs by kind, including the
message-passing gathers/scatters, e3nn tensor products and the neighbour-search work
model; latency; peak memory in a fresh process; serialized size). This module keeps the
names the benchmark scripts import: ``measure`` (a dict), ``count_macs`` (a dict with the
total ``macs``, ``macs_dense`` = the ``linear`` kind, ``gather_scatter`` and every other
kind), ``latency_ms``, ``peak_memory_mib``, ``serialized_size``; plus the training run
(``fit_and_test``) and the output writers.

Latency and memory vary with the machine's other load; the benchmarks print the core
count and torch's thread count beside them.

Devices: every script takes ``--device cpu|cuda|cuda:N`` (:func:`add_device_arg`,
:func:`resolve_device`); training and evaluation run there, the cost measurement (params,
MACs, latency, memory) always on the CPU: ``fit_and_test`` moves the model back first.
"""

from __future__ import annotations

import copy
import ctypes
import json
import math
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from geo3d.efficiency.profile import (latency_ms, mac_breakdown, nonzero_params,
                                      peak_memory_mib, serialized_size)

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["measure", "count_macs", "latency_ms", "peak_memory_mib", "serialized_size",
           "machine_info", "fit_and_test", "write_outputs", "fmt", "add_common_args",
           "tiny_kwargs", "cost_cells", "COST_HEADER", "resolve_common", "add_device_arg",
           "resolve_device", "synchronize"]


def count_macs(model: nn.Module, example: Any) -> Dict[str, int]:
    """``{"macs", "macs_dense", "gather_scatter", <every kind>}`` of one ``model(example)``."""
    kinds = mac_breakdown(model, example)
    return {"macs": sum(kinds.values()), "macs_dense": kinds["linear"], **kinds}


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
        ``{"params", "nonzero_params", "macs", "macs_dense", "gather_scatter", <kinds>,
        "latency_ms", "peak_memory_mib", "size_bytes", "threads"}``
        (see :mod:`geo3d.efficiency.profile`).
    """
    out = {"params": sum(p.numel() for p in model.parameters()),
           "nonzero_params": nonzero_params(model)}
    out.update(count_macs(model, example))
    out["latency_ms"] = latency_ms(model, example, warmup, repeats)
    out["peak_memory_mib"] = peak_memory_mib(model, example, spec) if memory else None
    out["size_bytes"] = serialized_size(model)
    out["threads"] = torch.get_num_threads()
    return out


# --------------------------------------------------------------------------- benchmark runs


def timed(fn, *args, memory: bool = False):
    """``(result, wall s, cpu s, peak extra MiB or None)`` of one call.

    With ``memory`` the freed heap is first given back to the kernel and the RSS
    high-water mark reset, so the call's growth shows; that makes the call pay page faults
    a warm allocator in a stream would not, so latency is taken from calls without it."""
    from geo3d.efficiency.profile import _reset_peak, _rss_kib  # the profiler's /proc reads

    before = None
    if memory:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back, so growth shows
        except (OSError, AttributeError):
            pass
        before = _rss_kib("VmRSS") if _reset_peak() else None  # RSS high-water mark reset
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = _rss_kib("VmHWM") if memory else None
    mem = None if before is None or peak is None else max(0, peak - before) / 1024
    return out, wall, cpu, mem


def peak_extra_mib(model: nn.Module, example: Any) -> Optional[float]:
    """Peak extra resident MiB of one inference of a warm ``model`` in this process
    (:func:`timed` with ``memory``); works for models that cannot be pickled to the
    fresh process of ``geo3d.efficiency.profile`` (compiled int8 blocks)."""
    with torch.inference_mode():
        model(example)  # warm: compilation and lazy buffers are not the call's memory
        return timed(model, example, memory=True)[3]


def machine_info() -> dict:
    return dict(cores=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                torch_threads=torch.get_num_threads(), platform=platform.platform())


def _seconds_per_step(model: nn.Module, dataset: Sequence, batch_size: int,
                      device: str = "cpu") -> float:
    """Seconds of one optimizer step on ``device``, timed on a throw-away copy: the fastest
    of up to three steps after one warm-up. Early steps of a fresh process can be several
    times slower than the steady state (a 20-minute run measured 2.3 s against 0.58 s), so
    the fastest is the better estimate; :func:`fit_and_test` paces its schedule by the
    clock anyway and uses this only for a ceiling on the steps."""
    from torch_geometric.loader import DataLoader

    probe = copy.deepcopy(model).to(device).train()
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    batches = iter(DataLoader(list(dataset)[: 4 * batch_size], batch_size=batch_size))
    times = []
    for batch in batches:
        batch = batch.to(device)
        synchronize(device)
        t0 = time.perf_counter()
        opt.zero_grad()
        probe.loss(probe(batch), batch).backward()
        opt.step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times[1:]) if len(times) > 1 else times[0]


def fit_and_test(name: str, kwargs: dict, train_set: Sequence, val_set: Sequence,
                 test_sets: Dict[str, Sequence], *, minutes: float, batch_size: int,
                 lr: float, seed: int, class_names: Sequence[str],
                 example: Any, repeats: int = 10, memory: bool = True,
                 return_model: bool = False, device: str = "cpu",
                 epochs: Optional[int] = None) -> dict:
    """Train registry model ``name`` for ``minutes``, evaluate it, and :func:`measure` it.

    The cosine schedule is paced by the clock (``TrainConfig(schedule="time")``): it ends
    when ``minutes`` run out, however fast the machine runs, e.g. when another job shares
    the cores after the start. A few throw-away steps are timed and the planned epochs
    hold twice the steps they estimate, a ceiling that only a machine much faster than
    that estimate reaches first. Validation runs once, at the end; the returned model is
    the last one. With ``epochs`` given, it trains exactly that many instead, the schedule
    paced by the steps (``minutes`` unused): equal training for the runs it compares,
    whatever else shares the machine. Training and evaluation run on ``device``
    (``evaluate`` uses the device of the model's parameters); the model is then moved to
    the CPU, measured there and returned there.

    Returns:
        ``{"model", "kwargs", "train": {...}, "val": metrics, "test": {name: metrics},
        "cost": measure(...)}``, plus ``"trained_model"`` when ``return_model``.
    """
    from geo3d import models
    from geo3d.tasks import TrainConfig, evaluate, seed_everything, train

    seed_everything(seed)
    model = models.create(name, **kwargs)
    step_s = _seconds_per_step(model, train_set, batch_size, device)
    steps_per_epoch = max(1, math.ceil(len(train_set) / batch_size))
    fixed = epochs is not None
    if not fixed:
        epochs = max(1, int(2 * minutes * 60 / step_s / steps_per_epoch))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         max_minutes=None if fixed else minutes,
                         schedule="steps" if fixed else "time", progress=False, tensorboard=False,
                         eval_every=epochs, warmup_steps=min(10, epochs * steps_per_epoch // 10),
                         grad_clip=10.0, device=device)
    t0 = time.perf_counter()
    result = train(model, train_set, config, val_dataset=val_set, class_names=class_names,
                   num_classes=len(class_names))
    train_minutes = (time.perf_counter() - t0) / 60
    model.to(device)  # train() put it there already; evaluate() runs where it is
    val = result.final
    if val is None and val_set:  # stopped by the clock inside an epoch
        val = evaluate(model, val_set, batch_size=batch_size, num_classes=len(class_names),
                       class_names=class_names)
    tests = {key: evaluate(model, ds, batch_size=batch_size, num_classes=len(class_names),
                           class_names=class_names) for key, ds in test_sets.items()}
    model.cpu()  # the cost is CPU cost
    cost = measure(model, example, spec=(name, kwargs), repeats=repeats, memory=memory)
    return {"model": name, "kwargs": kwargs,
            "train": {"minutes": train_minutes, "budget_minutes": None if fixed else minutes,
                      "epochs": result.epochs,
                      "planned_epochs": epochs, "steps": result.steps, "stopped": result.stopped,
                      "seconds_per_step_probe": step_s, "batch_size": batch_size, "lr": lr,
                      "device": device,
                      "final_loss": next((r["loss"] for r in reversed(result.history)
                                          if r.get("split") == "train"), None)},
            "val": val, "test": tests, "cost": cost,
            **({"trained_model": model} if return_model else {})}


TINY_KWARGS = {  # --tiny: the smallest sensible widths (smoke tests), by model family
    "dgcnn": dict(width=8, emb_channels=16, k=4, head_channels=(16,)),
    "pointnet2": dict(width=4, max_neighbors=4, head_channels=(8,)),
    "equivariant": dict(width=2, lmax=1, depth=1, num_basis=4, radial_hidden=4,
                        head_hidden=8),
    "gem": dict(width=2, levels=1, order=1, head_channels=(8,)),
    "voxel_unet": dict(width=4, depth=2, head_channels=(8,)),
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


def _device_name(text: str) -> str:
    """argparse type of ``--device``: ``cpu``, ``cuda`` or ``cuda:N``."""
    import argparse

    if text in ("cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"invalid device {text!r}: choose cpu, cuda or cuda:N")


def add_device_arg(ap, cpu_only: Optional[str] = None, note: Optional[str] = None) -> None:
    """Add ``--device`` (cpu, cuda, cuda:N; default cpu) to the parser ``ap``.

    Args:
        ap: an ``argparse.ArgumentParser``.
        cpu_only: for scripts with nothing to run on a GPU: what runs on the CPU anyway
            (said in ``--help``; the flag is accepted and recorded).
        note: appended to the help text (e.g. what else stays on the CPU).
    """
    text = ("device of training and evaluation: cpu, cuda or cuda:N (default: cpu); "
            "costs (params, MACs, latency, memory) are always measured on the CPU")
    if cpu_only:
        text = (f"cpu, cuda or cuda:N (default: cpu); accepted and recorded, but the work is "
                f"CPU-only here: {cpu_only}")
    if note:
        text = f"{text}; {note}"
    ap.add_argument("--device", default="cpu", type=_device_name, metavar="{cpu,cuda,cuda:N}",
                    help=text)


def resolve_device(ap, args) -> str:
    """``args.device``, checked: a CUDA device must exist (else ``ap.error``: exit 2).

    Call it right after ``parse_args``, before any work.
    """
    device = args.device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            ap.error(f"--device {device}: torch sees no CUDA GPU on this machine")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            ap.error(f"--device {device}: torch sees only {torch.cuda.device_count()} CUDA "
                     f"GPU(s) on this machine")
    return device


def synchronize(device) -> None:
    """Wait for the queued GPU work of ``device`` (a no-op on the CPU): call it around
    timed code."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


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


