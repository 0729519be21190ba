"""Conditional compute and distillation: what each costs and what it keeps.

On ``SyntheticShapes`` classification (8 classes, ``pos`` only), for ``dgcnn_cls`` and
``pointnet2_cls``:

* budget sweep: a dense model and a slimmable one (``conditional(model,
  ConditionalConfig(method="budget"))``, sandwich rule + in-place distillation), each
  trained from the same initialisation for the same wall time; the slimmable one is
  evaluated at every budget of its grid: accuracy, MACs (``count_macs``), latency (one
  shape, median of warm runs);
* early exit: the trained dense model gets exit heads (backbone frozen, heads trained),
  evaluated at several confidence thresholds: accuracy, exit rates, MACs per shape;
* routing: the slimmable model at budget 0.25 answers what it is sure of, the same model
  at budget 1 the rest: coverage, accuracy, MACs per shape, per threshold;
* distillation: a small DGCNN (width 16, 128-wide embedding) trained alone vs with KD
  (and, without ``--quick``, selective KD) from the dense DGCNN, same wall time.

MACs per shape of early exit and routing are measured on one batch of test shapes (the
work actually done, divided by the number of shapes). Writes ``conditional.json`` (with a
``"results"`` list of :class:`geo3d.bench.results.ResultRow`) and ``conditional.md`` to
``--out``. Training runs on ``--device`` (default cpu); each model is moved back to the
CPU after training, and evaluation, MACs and latency run there (the conditional wrappers
keep per-call statistics on the CPU). Run: ``python benchmarks/conditional.py [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (_seconds_per_step, add_device_arg, fmt, machine_info,  # noqa: E402
                      resolve_device, write_outputs)

MODELS = ("dgcnn_cls", "pointnet2_cls")
MODEL_KWARGS = {"dgcnn_cls": dict(width=32, emb_channels=256, k=16, head_channels=(128, 64)),
                "pointnet2_cls": dict(width=32, head_channels=(128, 64))}
STUDENT_KWARGS = dict(width=16, emb_channels=128, k=16, head_channels=(64,))
THRESHOLDS = (0.5, 0.7, 0.9, 0.99)
TASK = "shape classification"


def shapes(split: str, size: int, num_points: int, seed: int) -> List:
    from geo3d.datasets import SyntheticShapes

    ds = SyntheticShapes(split, size, num_points=num_points, seed=seed, task="classification",
                         normals=False)
    return [ds[i] for i in range(size)]


def fit(model, train_set, minutes: float, batch_size: int, lr: float, seed: int,
        device: str = "cpu"):
    """Train ``model`` in place on ``device`` for about ``minutes`` (cosine schedule sized
    to it), then move it back to the CPU."""
    from geo3d.tasks import TrainConfig, seed_everything, train

    seed_everything(seed)
    step_s = _seconds_per_step(model, train_set, batch_size, device)
    per_epoch = max(1, math.ceil(len(train_set) / batch_size))
    epochs = max(1, int(minutes * 60 / step_s / per_epoch))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         max_minutes=minutes, progress=False, tensorboard=False, grad_clip=10.0,
                         warmup_steps=min(10, epochs * per_epoch // 10), device=device)
    result = train(model, train_set, config)
    model.cpu()
    return {"steps": result.steps, "epochs": result.epochs, "stopped": result.stopped,
            "device": device}


def oa(model, test_set, batch_size: int) -> float:
    from geo3d.tasks import evaluate

    return evaluate(model, test_set, batch_size=batch_size)["OA"]


def row(model: str, variant: str, value: float, **kw) -> dict:
    from geo3d.bench.results import ResultRow

    return ResultRow(benchmark="conditional", task=TASK, model=model, variant=variant,
                     metric="OA", value=float(value), **kw).to_dict()


def budget_sweep(name, kwargs, data, s, out_rows):
    from geo3d import models
    from geo3d.efficiency import ConditionalConfig, conditional, count_macs
    from geo3d.efficiency.profile import latency_ms

    torch.manual_seed(s["seed"])
    dense = models.create(name, **kwargs)
    slim = conditional(dense, ConditionalConfig(method="budget"))
    print(f"{name}: dense, {s['minutes']} min", flush=True)
    dense_fit = fit(dense, data["train"], s["minutes"], s["batch_size"], s["lr"], s["seed"],
                    s["device"])
    print(f"{name}: slimmable (sandwich), {s['minutes']} min", flush=True)
    slim_fit = fit(slim, data["train"], s["minutes"], s["batch_size"], s["lr"], s["seed"],
                   s["device"])
    example = data["test"][0]
    dense_macs = count_macs(dense, example)
    out_rows.append(row(name, "dense", oa(dense, data["test"], s["batch_size"]),
                        params=sum(p.numel() for p in dense.parameters()), macs=dense_macs,
                        latency_ms=latency_ms(dense, example, 2, s["repeats"]),
                        metrics={"train": dense_fit}))
    sweep = []
    for b in slim.budgets:
        slim.set_budget(b)
        macs = count_macs(slim, example)
        r = row(name, f"slimmable b={b:g}", oa(slim, data["test"], s["batch_size"]), macs=macs,
                latency_ms=latency_ms(slim, example, 2, s["repeats"]),
                params=sum(p.numel() for p in slim.parameters()),
                metrics={"budget": b, "mac_reduction_vs_b1": None, "train": slim_fit},
                notes="one set of weights for every budget")
        sweep.append(r)
    for r in sweep:
        r["metrics"]["mac_reduction_vs_b1"] = sweep[-1]["macs"] / r["macs"]
    out_rows.extend(sweep)
    return dense, slim


def early_exit(name, dense, data, s, out_rows):
    from geo3d.efficiency import ConditionalConfig, conditional, count_macs
    from torch_geometric.data import Batch

    ee = conditional(dense, ConditionalConfig(method="early_exit", exit_hidden=64))
    print(f"{name}: exit heads, {s['exit_minutes']} min", flush=True)
    ee_fit = fit(ee, data["train"], s["exit_minutes"], s["batch_size"], s["lr"], s["seed"],
                 s["device"])
    probe = Batch.from_data_list(data["test"][: s["mac_batch"]])
    dense_macs = count_macs(dense, probe) / probe.num_graphs
    for th in THRESHOLDS:
        ee.threshold = th
        ee.reset_exit_stats()
        acc = oa(ee, data["test"], s["batch_size"])
        rates = ee.exit_rates()
        macs = count_macs(ee, probe) / probe.num_graphs
        out_rows.append(row(name, f"early exit conf>={th:g}", acc, macs=macs,
                            metrics={"exit_rates": rates, "mac_reduction": dense_macs / macs,
                                     "dense_macs_per_shape": dense_macs, "train": ee_fit},
                            notes="exit_rates: per exit, the last is the final head; "
                                  "MACs per shape on a batch of test shapes"))


def routing(name, slim, data, s, out_rows):
    from geo3d.efficiency import ConditionalConfig, conditional, count_macs
    from torch_geometric.data import Batch

    small, large = copy.deepcopy(slim).set_budget(slim.budgets[0]), copy.deepcopy(slim).set_budget(1.0)
    probe = Batch.from_data_list(data["test"][: s["mac_batch"]])
    large_macs = count_macs(large, probe) / probe.num_graphs
    for th in THRESHOLDS:
        router = conditional(small, ConditionalConfig(method="routing", threshold=th), large=large)
        acc = oa(router, data["test"], s["batch_size"])
        coverage = router.coverage()
        macs = count_macs(router, probe) / probe.num_graphs
        out_rows.append(row(name, f"routing b=0.25->1 conf>={th:g}", acc, macs=macs,
                            metrics={"coverage": coverage, "mac_reduction_vs_large": large_macs / macs},
                            notes="small: the slimmable model at 0.25, large: at 1"))


def distillation(teacher, data, s, out_rows):
    from geo3d import models
    from geo3d.efficiency import DistillConfig, count_macs
    from geo3d.efficiency.distill import Distiller

    variants = [("no KD", None), ("KD", DistillConfig(method="kd"))]
    if not s["quick"]:
        variants.append(("selective KD", DistillConfig(method="selective")))
    example = data["test"][0]
    for label, config in variants:
        torch.manual_seed(s["seed"])
        student = models.create("dgcnn_cls", in_channels=0, num_classes=8, **STUDENT_KWARGS)
        trained = student if config is None else Distiller(student, copy.deepcopy(teacher), config)
        print(f"student dgcnn_cls ({label}), {s['minutes']} min", flush=True)
        student_fit = fit(trained, data["train"], s["minutes"], s["batch_size"], s["lr"], s["seed"],
                          s["device"])
        out_rows.append(row("dgcnn_cls", f"student {label}", oa(student, data["test"], s["batch_size"]),
                            params=sum(p.numel() for p in student.parameters()),
                            macs=count_macs(student, example),
                            metrics={"student_kwargs": STUDENT_KWARGS, "train": student_fit},
                            notes="teacher: dense dgcnn_cls"))


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = ["# geo3d conditional compute and distillation", "",
             f"{m['cores']} cores, torch {m['torch']}; SyntheticShapes classification, "
             f"{s['num_points']} points, pos only; {s['sizes']['train']} train / "
             f"{s['sizes']['test']} test shapes; {s['minutes']} min per training run"
             f"{', --quick' if s['quick'] else ''}. MACs: `geo3d.efficiency.count_macs` "
             "(dense, gather/scatter and neighbour search); latency: one shape.", "",
             "model | variant | OA % | MMACs | latency ms | details", "--- | --- | --- | --- | --- | ---"]
    for r in result["results"]:
        details = ", ".join(f"{k} {_short(v)}" for k, v in r["metrics"].items()
                            if k not in ("student_kwargs", "dense_macs_per_shape", "train"))
        if "train" in r["metrics"]:
            details += f"{', ' if details else ''}{r['metrics']['train']['steps']} train steps"
        lines.append(f"{r['model']} | {r['variant']} | {fmt(r['value'], 1, 100)} | "
                     f"{fmt(r['macs'], 2, 1e-6)} | {fmt(r['latency_ms'])} | {details}")
    return "\n".join(lines) + "\n"


def _short(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(f"{x:.2f}" for x in v) + "]"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/bench/conditional", help="output folder (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="small data, short training")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--minutes", type=float, default=None, help="per training run (default 3; --quick 0.5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    add_device_arg(ap, note="evaluation, MACs and latency run on the CPU")
    args = ap.parse_args(argv)
    device = resolve_device(ap, args)
    q = args.quick
    minutes = args.minutes if args.minutes is not None else (0.5 if q else 3.0)
    s = dict(quick=q, minutes=minutes, exit_minutes=minutes / 2, seed=args.seed, lr=args.lr,
             num_points=256 if q else 512, sizes=dict(train=64 if q else 320, test=32 if q else 160),
             batch_size=8, repeats=3 if q else 10, mac_batch=16 if q else 32, models=args.models,
             device=device)
    t0 = time.perf_counter()
    data = {k: shapes(k, n, s["num_points"], args.seed) for k, n in s["sizes"].items()}
    print(f"data ready in {time.perf_counter() - t0:.1f} s", flush=True)
    rows: List[dict] = []
    dense_dgcnn = None
    for name in args.models:
        kwargs = dict(in_channels=0, num_classes=8, **MODEL_KWARGS[name])
        dense, slim = budget_sweep(name, kwargs, data, s, rows)
        early_exit(name, dense, data, s, rows)
        routing(name, slim, data, s, rows)
        if name == "dgcnn_cls":
            dense_dgcnn = dense
    if dense_dgcnn is not None:
        distillation(dense_dgcnn, data, s, rows)
    result = {"machine": machine_info(), "device": device, "settings": s, "results": rows,
              "wall_minutes": (time.perf_counter() - t0) / 60}
    md = markdown(result)
    print(md)
    write_outputs(args.out, "conditional", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
