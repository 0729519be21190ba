"""What do geo3d's efficiency transforms buy, and what do they cost in accuracy, on 2 cores?

Each segmentation model (``dgcnn_seg``, ``pointnet2_seg``, ``equivariant_seg``, and
``gem_seg`` when registered) is trained (``benchmarks/_measure.fit_and_test``) on a part-
segmentation task: the point models on SyntheticShapes (24 part labels, ``pos`` only),
GEM-CNN on SyntheticMeshes humanoids (10 parts, curvature inputs; it needs triangle
meshes). The e3nn model uses the small CPU configuration of :data:`MODEL_KWARGS` (width 8,
``lmax`` 1, 2 layers, radius 0.1: 0.7 s per training step of 8 shapes, where the defaults
take ~45 s). Each is then transformed with ``geo3d.efficiency``:

* ``ptq_int8``: PT2E static int8 of the MLP blocks, compiled with inductor freezing;
* ``structured50_ft``: 50% of the channels removed (DGCNN, PointNet++; irreps
  multiplicities for the e3nn model; rho-fields of the blocks and residual streams for
  GEM), then fine-tuned for ``--finetune-minutes``;
* ``magnitude50``: global magnitude pruning of 50% of the weights (no fine-tuning);
* ``ltp``: Learned Threshold Pruning trained for ``--steps`` steps with the soft-L0
  weight of ``LTP_L0_WEIGHT`` (3, and 6 for PointNet++: at 3 it stopped at 9.8x; or
  ``--l0-weight``) and the threshold learning rate of ``LTP_THRESHOLD_LR`` (0.05, and
  0.1 for GEM: Adam moves a threshold about that much per step, so with 150 steps at 0.05
  every large GEM layer stopped at 9-11% of its weights, 9.2-9.6x at any soft-L0 weight;
  at 0.1, 17x; or ``--threshold-lr``), then the surviving weights fine-tuned with the mask fixed for
  ``--ltp-finetune`` steps (default 3x ``--steps``: the mask, and so the compression, is
  already fixed; on PointNet++ at weight 6, 300 such steps left a 1.2-point drop, 900 none);
* ``lsq4``: LSQ+ 4-bit quantization-aware training for ``--steps`` steps.

Every variant is evaluated on the test split (mIoU) and profiled
(``geo3d.efficiency.profile``: params, non-zero params, MACs with message passing and
search work, latency, size; peak extra resident memory of one inference is measured in
this process, ``_measure.peak_extra_mib``, because compiled int8 blocks cannot be sent to
the profiler's fresh process). Latencies are medians of ``--repeats`` warm runs, measured
in this process, dense and variant alternately; speed-ups are ratios of those medians.
For ``ptq_int8`` the MLP blocks alone are also timed (float eager vs int8 compiled, on the
rows each block sees). Writes ``efficiency.json``, ``efficiency.md`` and
``efficiency.png`` (mIoU vs latency).

Targets (issue 7, 2 cores): int8 >= 1.5x end to end (>= 2x on the MLP parts), <= 1 point
mIoU drop; 50% structured + fine-tuning >= 1.5x, <= 1 point; LTP >= 10x compression, <= 1
point; 4-bit LSQ+ <= 2 points. Conditional compute (the budget-0.25 target, early exit,
routing) and distillation are measured by ``benchmarks/conditional.py``.

Devices: the dense models train and are evaluated on ``--device`` (default cpu); the
transforms, fine-tuning, the variants' evaluation and every latency run on the CPU. The
picture ``efficiency_prediction.png`` shows a test shape's ground-truth parts beside the
first model's dense prediction and its first variant's (compressed) prediction.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (add_common_args, add_device_arg, fit_and_test, fmt,  # noqa: E402
                      machine_info, peak_extra_mib, resolve_common, resolve_device, tiny_kwargs,
                      write_outputs)
from _pictures import add_picture_arg, as_object, panel, picture, side_by_side  # noqa: E402
from _rows import make_row  # noqa: E402

MODELS = ("dgcnn_seg", "pointnet2_seg", "equivariant_seg", "gem_seg")
#: Per-model kwargs: the e3nn network's defaults (width 16, lmax 2, 3 layers, radius 0.2:
#: ~80 edges per point on these shapes) cost ~45 s per training step of 8 x 1,024 points.
MODEL_KWARGS = {"equivariant_seg": dict(width=8, lmax=1, depth=2, radius=0.1)}
LTP_L0_WEIGHT = {"pointnet2_seg": 6.0}  # LTP soft-L0 weight where the default 3 is not enough
LTP_THRESHOLD_LR = {"gem_seg": 0.1}  # LTP threshold learning rate where 0.05 caps it below 10x
VARIANTS = ("ptq_int8", "structured50_ft", "magnitude50", "ltp", "lsq4")
TARGETS = {  # variant: (min speed-up, max mIoU drop in points, min compression)
    "ptq_int8": (1.5, 1.0, None), "structured50_ft": (1.5, 1.0, None),
    "ltp": (None, 1.0, 10.0), "lsq4": (None, 2.0, None)}


def _alternating_latency(a: torch.nn.Module, b: torch.nn.Module, example, repeats: int):
    """Median ms of ``a`` and ``b``, timed alternately (shared machine: fair noise)."""
    from geo3d.efficiency.profile import latency_ms

    ta, tb = [], []
    for _ in range(repeats):
        ta.append(latency_ms(a, example, warmup=1 if not ta else 0, repeats=1))
        tb.append(latency_ms(b, example, warmup=1 if not tb else 0, repeats=1))
    return statistics.median(ta), statistics.median(tb)


def _block_speedup(dense: torch.nn.Module, quant: torch.nn.Module, example, repeats: int) -> dict:
    """Float eager vs int8 time of the MLP blocks alone, on the rows each block sees."""
    from geo3d.efficiency.profile import latency_ms

    seen: Dict[str, torch.Tensor] = {}
    names = quant.quant_report.quantized
    hooks = [dense.get_submodule(n).register_forward_pre_hook(
        lambda m, a, n=n: seen.setdefault(n, a[0].detach())) for n in names]
    with torch.no_grad():
        dense.eval()(example)
    for h in hooks:
        h.remove()
    t_f = t_q = 0.0
    for n in names:
        if n in seen:
            t_f += latency_ms(dense.get_submodule(n), seen[n], 1, repeats)
            t_q += latency_ms(quant.get_submodule(n), seen[n], 1, repeats)
    return {"float_ms": t_f, "int8_ms": t_q, "speedup": t_f / t_q if t_q else None}


def _finetune(model, train_set, minutes: float, batch_size: int, lr: float, seed: int, names):
    from geo3d.tasks import TrainConfig, train

    cfg = TrainConfig(epochs=1000, batch_size=batch_size, lr=lr, seed=seed, max_minutes=minutes,
                      progress=False, tensorboard=False, eval_every=1000, warmup_steps=5,
                      grad_clip=10.0, device="cpu")
    train(model, train_set, cfg, class_names=names, num_classes=len(names))
    return model


def variants(name: str, dense, data: dict, args, names) -> Dict[str, Callable[[], torch.nn.Module]]:
    from torch_geometric.loader import DataLoader

    from geo3d.efficiency import PruneConfig, QuantConfig, prune, quantize

    bs = args.batch_size or 8
    batches = list(DataLoader(data["train"], batch_size=bs, shuffle=True))
    calib = batches[:8]
    example = batches[0]
    steps = args.steps

    def structured():
        pruned = prune(dense, PruneConfig(method="structured", amount=0.5), example)
        return _finetune(pruned, data["train"], args.finetune_minutes, bs, args.lr / 2, args.seed, names)

    l0_weight = LTP_L0_WEIGHT.get(name, 3.0) if args.l0_weight is None else args.l0_weight
    threshold_lr = args.threshold_lr or LTP_THRESHOLD_LR.get(name, 0.05)
    return {
        "ptq_int8": lambda: quantize(dense, QuantConfig(method="ptq_int8"), calib),
        "structured50_ft": structured,
        "magnitude50": lambda: prune(dense, PruneConfig(amount=0.5, scope="global")),
        "ltp": lambda: prune(dense, PruneConfig(method="ltp", steps=steps, lr=args.lr / 4,
                                                threshold_lr=threshold_lr, l0_weight=l0_weight,
                                                finetune_steps=args.ltp_finetune), batches),
        "lsq4": lambda: quantize(dense, QuantConfig(method="qat_lsq", bits=4, steps=steps,
                                                    lr=args.lr / 4), batches),
    }


def _dense_model(name: str, kwargs: dict, data: dict, args, names, example, bs: int, device: str,
                 data_spec: object = None):
    """The trained dense model and its test mIoU: trained here (``fit_and_test``), or
    loaded from ``--dense-cache`` when a model of the same name, kwargs, budget, data and
    seed was saved there (then only evaluated)."""
    import hashlib
    import io
    import json

    from geo3d import models
    from geo3d.io.atomic import atomic_write_bytes
    from geo3d.tasks import evaluate

    shapes = {k: list(v.shape) for k, v in models.create(name, **kwargs).state_dict().items()}
    spec = json.dumps([name, kwargs, args.minutes_used, args.seed, args.sizes, args.points,
                       args.lr, bs, shapes] + ([] if data_spec is None else [data_spec]),
                      sort_keys=True)  # parameter shapes: a changed architecture retrains
    path = None
    if args.dense_cache:
        digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
        path = Path(args.dense_cache) / f"{name}-{digest}.pt"
        if path.exists():
            model = models.create(name, **kwargs)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            model.eval()
            base = evaluate(model, data["test"], batch_size=bs, num_classes=len(names),
                            class_names=names)["mIoU"]
            print(f"[{name}] dense model from {path}: mIoU {base:.3f}", flush=True)
            return model, base
    fit = fit_and_test(name, kwargs, data["train"], data["val"], {"test": data["test"]},
                       minutes=args.minutes_used, batch_size=bs, lr=args.lr, seed=args.seed,
                       class_names=names, example=example, repeats=1, memory=False,
                       return_model=True, device=device)
    model = fit["trained_model"]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(path, buf.getvalue())
    return model, fit["test"]["test"]["mIoU"]


def model_task(name: str, args, cache: dict) -> dict:
    """The data of model ``name``: ``{"data": splits, "names", "in_channels", "spec"}``;
    SyntheticShapes point clouds, or SyntheticMeshes meshes for GEM-CNN (built once per
    kind in ``cache``)."""
    kind = "meshes" if name.startswith("gem") else "shapes"
    if kind not in cache:
        if kind == "shapes":
            from segmentation import parts_splits  # the segmentation benchmark's data

            from geo3d.datasets import SyntheticShapes

            cache[kind] = {"data": parts_splits(args.sizes, args.points, args.seed),
                           "names": list(SyntheticShapes.PART_NAMES), "in_channels": 0,
                           "spec": None}
        else:
            from geo3d.datasets import SyntheticMeshes

            sizes = {k: max(2, v // 10) for k, v in args.sizes.items()}  # ~1k vertices each
            data = {}
            for split, size in sizes.items():
                ds = SyntheticMeshes(split, size, seed=args.seed, task="part_segmentation")
                data[split] = [ds[i] for i in range(size)]
            cache[kind] = {"data": data, "names": list(SyntheticMeshes.PART_NAMES),
                           "in_channels": ds.num_features,
                           "spec": ["meshes", sizes, ds.num_vertices]}  # a new template retrains
    return cache[kind]


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    meshes = " (gem_seg: SyntheticMeshes humanoid parts)" if any(
        n.startswith("gem") for n in s["models"]) else ""
    lines = ["# geo3d efficiency benchmark", "",
             f"{m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}; "
             f"SyntheticShapes part segmentation, {s['num_points']} points{meshes}; dense training "
             f"{s['minutes']} min, fine-tuning {s['finetune_minutes']} min, LTP/LSQ+ {s['steps']} "
             f"steps (LTP then {s.get('ltp_finetune', 0)} fine-tuning steps){', --quick' if s['quick'] else ''}. Latency: one batch of "
             f"{s['latency_batch']} clouds or meshes, median of {s['repeats']} runs alternating with "
             "the dense model. MACs include message passing and the search work model "
             "(geo3d.efficiency.profile).", "",
             "| model | variant | test mIoU % | drop pts | params | non-zero | compression | "
             "MMACs | latency ms | speed-up | peak MiB | size MB | target |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in result["rows"]:
        p = r.get("profile") or {}
        lines.append(
            f"| {r['model']} | {r['variant']} | {fmt(r.get('mIoU'), 1, 100)} | "
            f"{fmt(r.get('drop_points'), 2)} | {p.get('params', '-'):,} | "
            f"{p.get('nonzero_params', '-'):,} | {fmt(r.get('compression'), 2)} | "
            f"{fmt(p.get('macs'), 1, 1e-6)} | {fmt(r.get('latency_ms'))} | "
            f"{fmt(r.get('speedup'), 2)} | {fmt(r.get('peak_mib'))} | "
            f"{fmt(p.get('size_bytes'), 3, 1e-6)} | {r.get('target', '') or r.get('error', '')} |"
            if "profile" in r else
            f"| {r['model']} | {r['variant']} | - | - | - | - | - | - | - | - | - | - | "
            f"{r.get('error', '')} |")
    blocks = [r for r in result["rows"] if r.get("mlp_blocks")]
    if blocks:
        lines += ["", "int8 on the MLP blocks alone (float eager vs int8 compiled):", ""]
        for r in blocks:
            b = r["mlp_blocks"]
            lines.append(f"- {r['model']}: {fmt(b['float_ms'])} ms -> {fmt(b['int8_ms'])} ms "
                         f"({fmt(b['speedup'], 2)}x; target >= 2x)")
    floats = [r for r in result["rows"] if r.get("float_ops") is not None]
    if floats:
        lines += ["", "Graph ops left in float by ptq_int8:", ""]
        for r in floats:
            lines.append(f"- {r['model']}: inside blocks {sorted(set(o.split(': ')[1] for o in r['float_ops']))}; "
                         f"{len(r['float_modules'])} modules outside blocks (e.g. "
                         f"{', '.join(r['float_modules'][:4])})")
    lines += ["", "Conditional compute (budgets, early exit, routing) and distillation are "
              "measured by `benchmarks/conditional.py`.", ""]
    return "\n".join(lines)


def _target(variant: str, row: dict) -> str:
    if variant not in TARGETS or row.get("drop_points") is None:
        return ""
    speed, drop, comp = TARGETS[variant]
    ok = row["drop_points"] <= drop
    ok &= speed is None or (row.get("speedup") or 0) >= speed
    ok &= comp is None or (row.get("compression") or 0) >= comp
    return "met" if ok else "NOT met"


def result_rows(result: dict) -> List[dict]:
    """Suite rows (:class:`geo3d.bench.results.ResultRow` dicts): test mIoU and cost of the
    dense model and of every variant that applied (variants that failed are left out)."""
    rows = []
    for r in result["rows"]:
        if "error" in r:
            continue
        prof = r["profile"]
        rows.append(make_row(
            "efficiency", "part segmentation, compressed (SyntheticShapes)", r["model"], "mIoU",
            r["mIoU"], variant=r["variant"], params=prof["params"], macs=prof["macs"],
            latency_ms=r.get("latency_ms"), size_bytes=prof["size_bytes"],
            peak_memory_mib=r.get("peak_mib"),
            metrics={"nonzero_params": prof["nonzero_params"], "speedup": r.get("speedup"),
                     "compression": r.get("compression"), "drop_points": r.get("drop_points")}))
    return rows


def _plot(rows: List[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in sorted({r["model"] for r in rows}):
        pts = [r for r in rows if r["model"] == model and r.get("latency_ms") and r.get("mIoU") is not None]
        ax.scatter([r["latency_ms"] for r in pts], [100 * r["mIoU"] for r in pts], label=model)
        for r in pts:
            ax.annotate(r["variant"], (r["latency_ms"], 100 * r["mIoU"]), fontsize=7)
    ax.set_xlabel("latency (ms, one batch)")
    ax.set_ylabel("test mIoU (%)")
    ax.set_xscale("log")
    ax.legend()
    fig.tight_layout()
    import io

    from geo3d.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def prediction_picture(data, names: List[str], models: List[tuple]):
    """Ground-truth parts of one test shape | the parts each ``(title, model)`` predicts."""
    from torch_geometric.data import Batch, Data

    from geo3d.viewers import points

    panels = [panel(as_object(points(data, "label", names=names, point_size=4.0)),
                    "ground truth", 340, 400)]
    for title, model in models:
        with torch.no_grad():
            pred = model.eval()(Batch.from_data_list([data])).argmax(-1)
        scene = points(data, "prediction", prediction=Data(y=pred), names=names, point_size=4.0)
        panels.append(panel(as_object(scene), title, 340, 400))
    return side_by_side(panels)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "out/bench/efficiency")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--finetune-minutes", type=float, default=None,
                    help="fine-tuning after structured pruning (default: half of --minutes)")
    ap.add_argument("--steps", type=int, default=None, help="LTP / LSQ+ steps (default 300; --quick 30)")
    ap.add_argument("--l0-weight", type=float, default=None,
                    help="LTP soft-L0 weight (default: LTP_L0_WEIGHT per model, else 3)")
    ap.add_argument("--threshold-lr", type=float, default=None,
                    help="LTP learning rate of the thresholds (Adam moves each by about this "
                         "much per step, so with few steps it caps the sparsity; default: "
                         "LTP_THRESHOLD_LR per model, else 0.05)")
    ap.add_argument("--ltp-finetune", type=int, default=None,
                    help="LTP fine-tuning steps with the mask fixed (default: 3x --steps)")
    ap.add_argument("--dense-cache", default=None,
                    help="folder to save the trained dense models in and reuse them from "
                         "(same model, budget, data and seed): variants without retraining")
    add_device_arg(ap, note="here only the dense training and its evaluation use it")
    add_picture_arg(ap)
    args = ap.parse_args(argv)
    device = resolve_device(ap, args)
    from geo3d.models import list_models

    known = [m for m in MODELS if m in list_models()]
    models, minutes, repeats = resolve_common(ap, args, known)
    from geo3d.efficiency import compression_ratio, profile
    from geo3d.tasks import evaluate
    from torch_geometric.data import Batch

    q = args.quick
    args.steps = args.steps or (30 if q else 300)
    args.ltp_finetune = 3 * args.steps if args.ltp_finetune is None else args.ltp_finetune
    args.finetune_minutes = args.finetune_minutes if args.finetune_minutes is not None else minutes / 2
    num_points = args.num_points or (512 if q else 1024)
    sizes = dict(train=args.train_size or (96 if q else 960), val=args.val_size or (16 if q else 96),
                 test=args.test_size or (48 if q else 240))
    args.minutes_used, args.sizes, args.points = minutes, sizes, num_points
    latency_batch = 4
    tasks: dict = {}
    settings = dict(quick=q, minutes=minutes, finetune_minutes=args.finetune_minutes,
                    steps=args.steps, ltp_finetune=args.ltp_finetune, l0_weight=args.l0_weight,
                    threshold_lr=args.threshold_lr,
                    seed=args.seed, repeats=repeats, models=models,
                    variants=args.variants, num_points=num_points, sizes=sizes,
                    latency_batch=latency_batch, lr=args.lr, device=device)
    result = {"machine": machine_info(), "device": device, "settings": settings, "rows": []}
    shown: List[tuple] = []  # (title, model) of the picture: the first model's dense + variant
    shown_shape: tuple = ()  # (test item, part names) of that model
    bs = args.batch_size or 8
    for name in models:
        task = model_task(name, args, tasks)
        data, names = task["data"], task["names"]
        example = Batch.from_data_list(data["test"][:latency_batch])
        kwargs = dict(in_channels=task["in_channels"], num_classes=len(names),
                      **(tiny_kwargs(name) if args.tiny else MODEL_KWARGS.get(name, {})))
        dense, base = _dense_model(name, kwargs, data, args, names, example, bs, device,
                                   data_spec=task["spec"])
        if not shown:
            shown.append((f"{name} dense, mIoU {100 * base:.0f}%", dense))
            shown_shape = (data["test"][0], names)
        prof = profile(dense, example, repeats=0, memory=False)
        result["rows"].append({"model": name, "variant": "dense", "mIoU": base, "drop_points": 0.0,
                               "profile": prof.as_dict(), "compression": compression_ratio(dense),
                               "latency_ms": None, "speedup": 1.0,
                               "peak_mib": peak_extra_mib(dense.eval(), example)})
        dense_row = result["rows"][-1]
        builders = variants(name, dense, data, args, names)
        dense_times = []
        for variant in args.variants:
            row: dict = {"model": name, "variant": variant}
            print(f"[{name}/{variant}] building ({time.strftime('%H:%M:%S')})", flush=True)
            t0 = time.perf_counter()
            try:
                model = builders[variant]()
            except Exception as exc:  # noqa: BLE001 - a transform that does not apply is reported
                row["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
                result["rows"].append(row)
                print(f"[{name}/{variant}] {row['error']}", flush=True)
                continue
            row["transform_seconds"] = time.perf_counter() - t0
            print(f"[{name}/{variant}] built in {row['transform_seconds']:.0f} s; testing", flush=True)
            model.eval()
            row["mIoU"] = evaluate(model, data["test"], batch_size=bs, num_classes=len(names),
                                   class_names=names)["mIoU"]
            row["drop_points"] = 100 * (base - row["mIoU"])
            t_dense, t_var = _alternating_latency(dense, model, example, repeats)
            dense_times.append(t_dense)
            # pruning: prunable weights / non-zero ones; quantization: 32 bits / bits
            comp = {"ptq_int8": 4.0, "lsq4": 8.0}.get(variant) or compression_ratio(model)
            row.update(latency_ms=t_var, dense_latency_ms=t_dense, speedup=t_dense / t_var,
                       compression=comp, peak_mib=peak_extra_mib(model, example),
                       profile=profile(model, example, repeats=0, memory=False).as_dict())
            if variant == "ptq_int8":
                row["mlp_blocks"] = _block_speedup(copy.deepcopy(dense), model, example, repeats)
                row["float_ops"] = model.quant_report.float_ops
                row["float_modules"] = model.quant_report.float_modules
            row["target"] = _target(variant, row)
            if len(shown) == 1 and shown[0][1] is dense:
                shown.append((f"{variant}, mIoU {100 * row['mIoU']:.0f}%", model))
            result["rows"].append(row)
            print(f"[{name}/{variant}] mIoU {row['mIoU']:.3f} (dense {base:.3f}), "
                  f"{row['speedup']:.2f}x, compression {row['compression']:.1f}", flush=True)
        dense_row["latency_ms"] = statistics.median(dense_times) if dense_times else None
    Path(args.out).mkdir(parents=True, exist_ok=True)
    _plot(result["rows"], Path(args.out) / "efficiency.png")
    written = None if not shown else picture(
        args.out, "efficiency_prediction.png",
        lambda: prediction_picture(*shown_shape, shown), enabled=not args.no_pictures)
    result["pictures"] = [written] if written else []
    result["results"] = result_rows(result)
    write_outputs(args.out, "efficiency", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
