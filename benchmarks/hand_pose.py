"""Do structural-consistency priors help hand-pose models, and small ones more?

The ``hand_pose`` pipeline (:mod:`geo3d.models.hand_pose`: localise the hand and forearm
in the full depth frame, crop, a box from the forearm to the hand, PointNet++, offset
voting + regression) is trained from scratch on ``SyntheticHands`` frames for a fixed wall-time budget per run (``--minutes``) with AdamW
and a cosine schedule paced by the clock, so it ends with the budget
(``benchmarks/_measure.fit_and_test``; ``--epochs`` trains fixed epochs instead, paced
by the steps, so that the configs of a size train alike on a shared machine), at two
sizes (``hand_pose_small``, width 8, and ``hand_pose`` with ``--large-width``, >= 10x the
parameters), under an ablation of the structural terms of
:mod:`geo3d.models.hand_losses`:

* ``none``: joints, voting, offsets and localisation losses only;
* ``bone``, ``angle``, ``inside``: one structural term on;
* ``all``: every term on (the default model).

``--structural-scale`` multiplies the structural weights, to trace the trade-off between
bone-length error and joint error.

With the bone term on, a model's output includes its eval-time bone-proportion refinement
(:func:`geo3d.models.hand_losses.refine_bone_proportions`), with the inside term its
projection of joints in front of the observed hand onto it
(:func:`geo3d.models.hand_losses.project_into_hand`); the Markdown also gives the network's
own joints without them.

Each model is evaluated on the test split (mean joint error in mm, success rate over
thresholds, per-joint errors, bone-length error, fraction of joints outside the hand;
:mod:`geo3d.tasks.metrics.hand_pose`) and measured (params, MACs with message passing, CPU
latency on one test frame). The frames are rendered once at ``--width`` x ``--height``
(default 160 x 120, 60 degrees: a quarter of the default camera's rays, for the 2-core
budget) and reused by every run; ``--cache`` keeps them on disk between invocations.

Targets (issue 6): the full model's mean error <= 10 mm on the synthetic test split; the
structural terms cut the bone-length error by >= 50% and bring joints outside the hand to
~0%; the priors help the small model more than the large one. The Markdown says which
were met by this run.

Training and evaluation run on ``--device`` (default cpu); costs on the CPU. The picture
``hand_pose_prediction.png`` shows the depth points around the hand of the first test
frame, seen from the camera, with the ground-truth skeleton beside the skeleton the last
run (the largest model with all terms, by default) predicts.

Writes ``hand_pose.json``, ``hand_pose.md``, ``hand_pose_success.png`` and
``hand_pose_prediction.png`` to ``--out`` (with ``--save-models``, the trained models too).
Run: ``python benchmarks/hand_pose.py [--quick] [--minutes M] [--configs ...] [--models ...]
[--cache DIR]``
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (add_common_args, add_device_arg, fit_and_test, fmt,  # noqa: E402
                      machine_info, resolve_device, write_outputs)
from _pictures import add_picture_arg, picture  # noqa: E402
from _rows import cost_fields, make_row  # noqa: E402

CONFIGS = ("none", "bone", "angle", "inside", "all")
MODELS = ("hand_pose_small", "hand_pose")
TARGET_MM = 10.0


def weights_for(config: str, scale: float = 1.0):
    """The loss weights of an ablation config (``none``, one term, or ``all``), the
    structural ones ``scale`` times their defaults."""
    from dataclasses import replace

    from geo3d.models.hand_pose import HandPoseLossWeights

    base = HandPoseLossWeights()
    keep = {"none": (), "all": ("bone", "angle", "inside")}.get(config, (config,))
    return replace(base, **{k: (scale * getattr(base, k) if k in keep else 0.0)
                            for k in ("bone", "angle", "inside")})


def frames(split: str, size: int, width: int, height: int, seed: int, cache: Path | None) -> List:
    """Rendered ``SyntheticHands`` frames as a list (from ``cache`` when there)."""
    from geo3d.datasets import SyntheticHands
    from geo3d.sim.depth_camera import DepthCamera
    from geo3d.sim.hand_render import HandSceneConfig

    # "_l": frames with ``label`` (the localiser learns the forearm from it)
    path = None if cache is None else cache / f"hands_{split}_{size}_{width}x{height}_s{seed}_l.pt"
    if path is not None and path.exists():
        return torch.load(path, weights_only=False)
    f = width / (2 * 0.57735)  # 60 degrees horizontal field of view
    cam = DepthCamera(width=width, height=height, fx=f, fy=f, depth_noise=5e-3, dropout=0.02,
                      max_depth=3.0)
    ds = SyntheticHands(split, size, seed=seed, config=HandSceneConfig(camera=cam), with_depth=False)
    items = [ds[i] for i in range(size)]
    if path is not None:
        from geo3d.io.atomic import atomic_write_bytes

        buf = io.BytesIO()
        torch.save(items, buf)
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    return items


def fixed_epochs(ap, counts, models: List[str]) -> Dict[str, object]:
    """``--epochs`` per model name (None: train for ``--minutes``)."""
    if counts is None:
        return {m: None for m in models}
    if len(counts) not in (1, len(models)) or min(counts) < 1:
        ap.error(f"--epochs takes one count >= 1, or one per model of {models}; got {counts}")
    return dict(zip(models, counts * len(models) if len(counts) == 1 else counts))


def save_model(model, path: Path) -> None:
    """``model``'s state dict (on the CPU) at ``path``, written atomically."""
    from geo3d.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def success_plot(runs: List[dict], path: Path) -> None:
    """Success rate over thresholds, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        rate = r["test"]["test"]["success_rate"]
        ts = [float(k[:-2]) for k in rate]
        ax.plot(ts, [100 * v for v in rate.values()], label=f"{r['size']} / {r['config']}",
                ls="-" if r["size"] == "small" else "--")
    ax.set_xlabel("max joint error threshold t (mm)")
    ax.set_ylabel("frames with max error <= t (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    from geo3d.io.atomic import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())


def hand_picture(model, data, title: str, margin: float = 0.04):
    """Depth points within ``margin`` m of the hand's joints' box, seen from the camera,
    with the ground-truth skeleton | the predicted skeleton (matplotlib: Open3D's software
    rasteriser hung on some of these small scenes, spheres and wide lines alike)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from torch_geometric.data import Batch

    from geo3d.sim.hand import BONES

    model.eval()
    with torch.no_grad():
        pred = model(Batch.from_data_list([data]))["joints"].reshape(-1, 3).cpu().double()
    gt, pos = data.joints.reshape(-1, 3).double(), data.pos.double()
    lo, hi = gt.min(0).values - margin, gt.max(0).values + margin
    cloud = pos[((pos >= lo) & (pos <= hi)).all(1) & (pos[:, 2] > 0)]

    def image_plane(p):  # pinhole: x right, y down, z forward
        return (p[:, :2] / p[:, 2:].clamp_min(1e-3)).numpy()

    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), sharex=True, sharey=True)
    for ax, joints, name in ((axes[0], gt, "ground truth"), (axes[1], pred, f"prediction: {title}")):
        if len(cloud):
            xy = image_plane(cloud)
            ax.scatter(xy[:, 0], xy[:, 1], s=2, c="0.7", linewidths=0)
        xy = image_plane(joints)
        for parent, child in BONES:
            ax.plot(xy[[parent, child], 0], xy[[parent, child], 1], lw=2.5,
                    color=colors[min((child - 1) // 4, 4)])
        ax.scatter(xy[:, 0], xy[:, 1], s=14, c="k", zorder=3)
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].invert_yaxis()  # image rows grow downwards (the axes share y)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def budget(result: dict) -> str:
    """The training budget of a run, in words."""
    if result.get("epochs"):
        return f"{'/'.join(map(str, result['epochs']))} epochs (fixed)"
    return f"{result['minutes']} min"


def markdown(result: dict) -> str:
    runs = result["runs"]
    lines = ["# Hand pose: structural priors ablation", "",
             f"Train {result['sizes']['train']} / test {result['sizes']['test']} SyntheticHands "
             f"frames at {result['camera']}; {budget(result)} of training per run on "
             f"{result['machine']['cores']} cores ({result['machine']['torch_threads']} torch threads); "
             f"structural weights x{result.get('structural_scale', 1.0):g} of their defaults.", "",
             "size | terms | params | MMACs | latency ms | mean err mm | median mm | success@20mm "
             "| bone err mm | outside % | epochs",
             "--- | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---"]
    for r in runs:
        t, c = r["test"]["test"], r["cost"]
        lines.append(f"{r['size']} | {r['config']} | {c['params']:,} | {fmt(c['macs'], 1, 1e-6)} | "
                     f"{fmt(c['latency_ms'])} | {fmt(t['mean_error_mm'])} | {fmt(t['median_error_mm'])} | "
                     f"{fmt(t['success_rate'].get('20mm'), 1, 100)} | {fmt(t['bone_length_error_mm'])} | "
                     f"{fmt(t['outside_fraction'], 1, 100)} | {r['train']['epochs']}")
    refined = [r for r in runs if r.get("test_network")]
    if refined:
        lines += ["", "Without the eval-time refinements (the network's joints):", ""]
        for r in refined:
            t = r["test_network"]
            lines.append(f"- {r['size']} {r['config']}: mean {fmt(t['mean_error_mm'])} mm, bone "
                         f"{fmt(t['bone_length_error_mm'])} mm, outside "
                         f"{fmt(t['outside_fraction'], 1, 100)}%")
    lines += ["", "## Targets", ""]
    for line in result["targets"]:
        lines.append(f"- {line}")
    lines += ["", "Success-rate curves: `hand_pose_success.png`.", ""]
    return "\n".join(lines)


def targets(runs: List[dict]) -> List[str]:
    """Whether this run met the issue's targets, in words."""
    by = {(r["size"], r["config"]): r["test"]["test"] for r in runs}
    out = []
    for size in ("small", "large"):
        full, none = by.get((size, "all")), by.get((size, "none"))
        if full is not None:
            ok = full["mean_error_mm"] <= TARGET_MM
            out.append(f"{size} full model mean error {full['mean_error_mm']:.1f} mm "
                       f"(target <= {TARGET_MM:g}): {'met' if ok else 'NOT met'}")
        if full is not None and none is not None:
            cut = 1 - full["bone_length_error_mm"] / max(none["bone_length_error_mm"], 1e-9)
            out.append(f"{size}: structural terms cut bone-length error by {100 * cut:.0f}% "
                       f"({none['bone_length_error_mm']:.1f} -> {full['bone_length_error_mm']:.1f} mm; "
                       f"target >= 50%): {'met' if cut >= 0.5 else 'NOT met'}")
            out.append(f"{size}: joints outside the hand {100 * none['outside_fraction']:.1f}% -> "
                       f"{100 * full['outside_fraction']:.1f}% (target ~0%)")
    gains = {}
    for size in ("small", "large"):
        if (size, "all") in by and (size, "none") in by:
            gains[size] = by[(size, "none")]["mean_error_mm"] - by[(size, "all")]["mean_error_mm"]
    if len(gains) == 2:
        out.append(f"priors' gain in mean error: small {gains['small']:+.1f} mm, large "
                   f"{gains['large']:+.1f} mm (target: small gains more): "
                   f"{'met' if gains['small'] > gains['large'] else 'NOT met'}")
    return out


def result_rows(result: dict) -> List[dict]:
    """Suite rows (:class:`geo3d.bench.results.ResultRow` dicts): mean joint error (mm,
    lower is better) and cost of every run, variant = the ablation config."""
    rows = []
    for r in result["runs"]:
        t = r["test"]["test"]
        rows.append(make_row(
            "hand_pose", "hand pose (SyntheticHands)", r["model"], "mean_error_mm",
            t["mean_error_mm"], variant=f"structural terms: {r['config']}",
            higher_is_better=False, **cost_fields(r["cost"]),
            metrics={"median_error_mm": t.get("median_error_mm"),
                     "success_20mm": t.get("success_rate", {}).get("20mm"),
                     "bone_length_error_mm": t.get("bone_length_error_mm"),
                     "outside_fraction": t.get("outside_fraction"),
                     "train_epochs": r["train"]["epochs"]},
            notes=f"{r['size']} model, {budget(result)} of training"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "out/benchmarks")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS,
                    help="ablation configs (default: all five)")
    ap.add_argument("--structural-scale", type=float, default=1.0,
                    help="multiply the structural terms' default weights (default 1; the "
                         "trade-off of bone-length error against joint error)")
    ap.add_argument("--epochs", type=int, nargs="+", default=None,
                    help="train fixed epochs instead of --minutes (the schedule paced by the "
                         "steps, so every config of a size trains alike): one count for every "
                         "model, or one per model of --models, in its order")
    ap.add_argument("--large-width", type=int, default=32, help="width of hand_pose (default 32)")
    ap.add_argument("--width", type=int, default=160, help="depth image width (default 160)")
    ap.add_argument("--height", type=int, default=120, help="depth image height (default 120)")
    ap.add_argument("--cache", type=Path, default=None, help="folder to keep rendered frames in")
    ap.add_argument("--save-models", action="store_true",
                    help="also write each trained model's state dict to --out as "
                         "<model>_<config>.pt (to re-evaluate without training again)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on 2 shared cores one thread per process "
                         "was ~10x faster than 2 threads competing with other processes)")
    add_device_arg(ap)
    add_picture_arg(ap)
    args = ap.parse_args(argv)
    if not 0 <= args.structural_scale < float("inf"):
        ap.error(f"--structural-scale must be a finite number >= 0, got {args.structural_scale}")
    device = resolve_device(ap, args)
    torch.set_num_threads(args.threads)
    models = args.models or list(MODELS)
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 3.5)
    epochs = fixed_epochs(ap, args.epochs, models)
    n_train = args.train_size or (32 if args.quick else 2000)
    n_test = args.test_size or (8 if args.quick else 300)
    n_val = args.val_size or max(2, n_test // 4)
    batch_size = args.batch_size or (4 if args.tiny else 16)
    if args.tiny:  # smoke test: a tiny camera and tiny networks
        args.width, args.height, args.large_width = 48, 36, 8

    t0 = time.perf_counter()
    train_set = frames("train", n_train, args.width, args.height, args.seed, args.cache)
    test_set = frames("test", n_test, args.width, args.height, args.seed, args.cache)
    print(f"rendered/loaded {n_train} + {n_test} frames in {time.perf_counter() - t0:.0f} s")
    tiny = dict(loc_points=32, num_points=32, max_neighbors=4) if args.tiny else {}
    sizes = {"hand_pose_small": ("small", {"width": 4} if args.tiny else {}),
             "hand_pose": ("large", {"width": args.large_width, **tiny})}
    runs: List[Dict] = []
    shown = None  # (model, title) of the picture: the last run
    for name in models:
        size, kwargs = sizes[name]
        for config in args.configs:
            kw = {**kwargs, "weights": weights_for(config, args.structural_scale)}
            r = fit_and_test(name, kw, train_set, test_set[:n_val], {"test": test_set},
                             minutes=minutes, batch_size=batch_size, lr=args.lr, seed=args.seed,
                             class_names=["hand"], example=test_set[0],
                             repeats=args.repeats or (3 if args.quick else 10),
                             memory=not args.no_memory, device=device, return_model=True,
                             epochs=epochs[name])
            model = r.pop("trained_model")
            if args.save_models:
                save_model(model, Path(args.out) / f"{name}_{config}.pt")
            # the network's joints before the eval refinement (None when it has none)
            r["test_network"] = r["test"]["test"].get("network")
            shown = (model, f"{name} ({config}), {r['test']['test']['mean_error_mm']:.1f} mm mean")
            r.update(size=size, config=config)
            r["kwargs"] = {k: (v.__dict__ if k == "weights" else v) for k, v in kw.items()}
            t = r["test"]["test"]
            print(f"{size:5s} {config:6s} params {r['cost']['params']:,} mean {t['mean_error_mm']:.1f} mm "
                  f"bone {t['bone_length_error_mm']:.1f} mm outside {100 * t['outside_fraction']:.1f}% "
                  f"latency {r['cost']['latency_ms']:.1f} ms epochs {r['train']['epochs']}", flush=True)
            runs.append(r)
    result = {"sizes": {"train": n_train, "test": n_test}, "camera": f"{args.width}x{args.height}",
              "minutes": None if args.epochs else minutes, "epochs": args.epochs,
              "structural_scale": args.structural_scale,
              "machine": machine_info(), "device": device, "runs": runs,
              "targets": targets(runs), "pictures": []}
    result["results"] = result_rows(result)
    md = markdown(result)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    success_plot(runs, out / "hand_pose_success.png")
    written = None if shown is None else picture(
        out, "hand_pose_prediction.png", lambda: hand_picture(shown[0], test_set[0], shown[1]),
        enabled=not args.no_pictures)
    result["pictures"] = [written] if written else []
    write_outputs(args.out, "hand_pose", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
