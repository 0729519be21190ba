"""Does a classifier trained on aligned shapes still work on rotated ones?

Each classifier (``dgcnn_cls``, ``pointnet2_cls``, ``equivariant_cls``) is trained from
scratch on ``SyntheticShapes`` classification (8 classes, aligned canonical frame, NO
rotation augmentation, ``pos`` only: normals are left out so the equivariant model's
input is purely geometric) for a wall-time budget (``--minutes``, default 20; cosine
schedule sized to it), then evaluated on two test sets made of the same shapes: aligned
(``rotate="none"``) and randomly rotated (``rotate="so3"``, item ``i`` is exactly ``R_i @``
aligned item ``i``). Reported per model: both accuracies and their difference (points),
plus params, MACs, CPU latency, peak memory and size (``benchmarks/_measure.py``).

Target (issue 3): the equivariant model loses < 1 point of accuracy on the rotated set;
DGCNN, trained without rotation augmentation, is reported beside it.

Training and evaluation run on ``--device`` (default cpu); costs on the CPU. The picture
``classification_prediction.png`` shows two test shapes, aligned and rotated, each titled
with its true class and the class the best model (aligned accuracy) predicts.

Writes ``classification.json`` and ``classification.md`` to ``--out`` (atomically) and
prints the table. Run: ``python benchmarks/classification.py [--quick] [--models ...]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (COST_HEADER, add_common_args, add_device_arg, cost_cells,  # noqa: E402
                      fit_and_test, fmt, machine_info, resolve_common, resolve_device,
                      tiny_kwargs, write_outputs)
from _pictures import (BAD, GOOD, add_picture_arg, as_object, panel, picture,  # noqa: E402
                       side_by_side, titled)
from _rows import cost_fields, make_row  # noqa: E402

MODELS = ("dgcnn_cls", "pointnet2_cls", "equivariant_cls")
TARGET_DROP_POINTS = 1.0
#: Per-model kwargs. The equivariant network costs ~50x DGCNN per shape on 2 cores
#: (tensor products on every edge): a small one (width 8, lmax 1, 2 layers) at radius 0.12
#: (~15 edges per point; one step of 16 shapes: 2.0 s, against 6.5 s at radius 0.2) trains
#: ~600 steps in the 20-minute budget.
MODEL_KWARGS = {
    "dgcnn_cls": {},
    "pointnet2_cls": {},
    "equivariant_cls": dict(width=8, lmax=1, depth=2, radius=0.12),
}


def shapes(split: str, size: int, num_points: int, seed: int, rotate: str) -> List:
    from geo3d.datasets import SyntheticShapes

    ds = SyntheticShapes(split, size, num_points=num_points, seed=seed, task="classification",
                         rotate=rotate, normals=False)
    return [ds[i] for i in range(size)]


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = ["# geo3d classification benchmark: aligned vs rotated test set", "",
             f"{m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}; "
             f"SyntheticShapes, {s['num_points']:,} points, pos only; trained on "
             f"{s['sizes']['train']} aligned shapes without rotation augmentation, "
             f"{s['minutes']} min per model; {s['sizes']['test']} test shapes, aligned and "
             f"SO(3)-rotated; seed {s['seed']}{', --quick' if s['quick'] else ''}. Latency: "
             f"one shape, median of {s['repeats']} warm runs. MACs: dense + message-passing "
             "gather/scatter, neighbour searches excluded (see benchmarks/_measure.py). "
             "Cores used: CPU time / wall time of train + test + measure (below 2: the "
             "machine was shared).", "",
             f"| model | aligned acc % | rotated acc % | drop (points) | {COST_HEADER} | "
             "train min | steps | cores used |",
             "| --- |" + " ---: |" * 11]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {fmt(r['aligned_acc'], 1, 100)} | "
                     f"{fmt(r['rotated_acc'], 1, 100)} | {fmt(r['drop_points'], 1)} | "
                     f"{cost_cells(r['cost'])} | {fmt(r['train']['minutes'], 2)} | "
                     f"{r['train']['steps']} | {fmt(r['cpu_seconds'] / r['wall_seconds'], 2)} |")
    t = result.get("target")
    lines += ["", "## Target", ""]
    if t is None:
        lines.append("equivariant_cls was not run.")
    else:
        lines.append(f"equivariant_cls loses {t['drop_points']:.2f} points on the rotated set "
                     f"(target < {TARGET_DROP_POINTS:g}): **{'met' if t['met'] else 'NOT met'}**"
                     + (f"; dgcnn_cls loses {t['dgcnn_drop_points']:.2f} points."
                        if t.get("dgcnn_drop_points") is not None else "."))
        if t["aligned_acc"] <= 1.5 / len(result["class_names"]):
            lines.append("")
            lines.append("Caveat: equivariant_cls is near chance on the aligned set, so its "
                         "small drop says little; train longer (no --quick).")
    return "\n".join(lines) + "\n"


def result_rows(result: dict) -> List[dict]:
    """Suite rows (:class:`geo3d.bench.results.ResultRow` dicts): OA and cost of every
    model on two tasks, the aligned and the SO(3)-rotated test set."""
    rows = []
    for key, title in (("aligned", "aligned"), ("rotated", "SO(3)-rotated")):
        for r in result["rows"]:
            t = r["test"][key]
            rows.append(make_row(
                "classification", f"SyntheticShapes classification, {title} test set",
                r["model"], "OA", t["OA"], **cost_fields(r["cost"]),
                metrics={"mAcc": t.get("mAcc"), "drop_points": r["drop_points"],
                         "train_minutes": r["train"]["minutes"],
                         "train_steps": r["train"]["steps"]},
                notes="trained on aligned shapes, no rotation augmentation"))
    return rows


def prediction_picture(model, tests: dict, names: List[str], title: str, count: int = 2):
    """The first ``count`` test shapes, aligned then rotated, each titled true / predicted
    class (green: right, red: wrong), points coloured by height."""
    import torch
    from torch_geometric.data import Batch

    from geo3d.viewers import points

    model.eval()
    panels = []
    for key in ("aligned", "rotated"):
        shapes_ = tests[key][:count]
        with torch.no_grad():
            pred = model(Batch.from_data_list(shapes_)).argmax(-1).cpu().tolist()
        for data, p in zip(shapes_, pred):
            true = int(data.y.reshape(-1)[0])
            scene = as_object(points(data, "height", point_size=4.0))
            panels.append(panel(scene, f"{key}: {names[true]} -> {names[p]}", 250, 300,
                                legend=False, title_color=GOOD if p == true else BAD))
    return titled(side_by_side(panels), f"{title}: true class -> predicted class")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "out/bench/classification")
    add_device_arg(ap)
    add_picture_arg(ap)
    args = ap.parse_args(argv)
    device = resolve_device(ap, args)
    models, minutes, repeats = resolve_common(ap, args, MODELS)
    q = args.quick
    num_points = args.num_points or (512 if q else 1024)
    sizes = dict(train=args.train_size or (128 if q else 960),
                 val=args.val_size or (16 if q else 96), test=args.test_size or (64 if q else 400))
    batch_size = args.batch_size or (8 if q else 16)
    settings = dict(quick=q, minutes=minutes, seed=args.seed, repeats=repeats, models=models,
                    num_points=num_points, sizes=sizes, batch_size=batch_size, lr=args.lr,
                    tiny=args.tiny, device=device)
    from geo3d.datasets import SyntheticShapes

    t0 = time.perf_counter()
    train_set = shapes("train", sizes["train"], num_points, args.seed, "none")
    val_set = shapes("val", sizes["val"], num_points, args.seed, "none")
    tests = {"aligned": shapes("test", sizes["test"], num_points, args.seed, "none"),
             "rotated": shapes("test", sizes["test"], num_points, args.seed, "so3")}
    print(f"data ready in {time.perf_counter() - t0:.1f} s", flush=True)
    names = list(SyntheticShapes.CLASS_NAMES)
    rows, shown = [], None  # shown: (aligned accuracy, model, title) for the picture
    for name in models:
        kwargs = dict(in_channels=0, num_classes=len(names),
                      **(tiny_kwargs(name) if args.tiny else MODEL_KWARGS[name]))
        print(f"{name}: training {minutes} min", flush=True)
        wall, cpu = time.perf_counter(), time.process_time()
        row = fit_and_test(name, kwargs, train_set, val_set, tests, minutes=minutes,
                           batch_size=batch_size, lr=args.lr, seed=args.seed, class_names=names,
                           example=tests["aligned"][0], repeats=repeats, memory=not args.no_memory,
                           device=device, return_model=True)
        trained = row.pop("trained_model")
        # CPU seconds of this process (all its threads) over train + test + measure, beside
        # the wall seconds of the same span: their ratio shows the cores it really had
        row["cpu_seconds"] = time.process_time() - cpu
        row["wall_seconds"] = time.perf_counter() - wall
        row["aligned_acc"] = row["test"]["aligned"]["OA"]
        row["rotated_acc"] = row["test"]["rotated"]["OA"]
        row["drop_points"] = 100 * (row["aligned_acc"] - row["rotated_acc"])
        print(f"{name}: aligned {row['aligned_acc'] * 100:.1f}% rotated "
              f"{row['rotated_acc'] * 100:.1f}% ({row['train']['steps']} steps, CPU "
              f"{row['cpu_seconds'] / 60:.1f} min in {row['wall_seconds'] / 60:.1f} min)",
              flush=True)
        rows.append(row)
        if shown is None or row["aligned_acc"] > shown[0]:
            shown = (row["aligned_acc"], trained, f"{name} (aligned acc "
                                                  f"{100 * row['aligned_acc']:.0f}%)")
        del trained
    written = None if shown is None else picture(
        args.out, "classification_prediction.png",
        lambda: prediction_picture(shown[1], tests, names, shown[2]), enabled=not args.no_pictures)
    result = {"machine": machine_info(), "device": device, "settings": settings, "rows": rows,
              "class_names": names, "pictures": [written] if written else [],
              "wall_minutes": (time.perf_counter() - t0) / 60}
    by_name = {r["model"]: r for r in rows}
    if "equivariant_cls" in by_name:
        drop = by_name["equivariant_cls"]["drop_points"]
        result["target"] = {"drop_points": drop,
                            "aligned_acc": by_name["equivariant_cls"]["aligned_acc"], "target_points": TARGET_DROP_POINTS,
                            "met": bool(drop < TARGET_DROP_POINTS),
                            "dgcnn_drop_points": by_name.get("dgcnn_cls", {}).get("drop_points")}
    result["results"] = result_rows(result)
    md = markdown(result)
    print(md)
    write_outputs(args.out, "classification", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
