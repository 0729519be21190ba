"""``geo3d train`` and ``geo3d eval``: train a registered model on a synthetic dataset, and
evaluate a checkpoint written by ``geo3d train``.

Under ``torchrun --nproc_per_node 2 -m geo3d.cli train ...`` training runs with DDP.
"""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path
from typing import Optional, Sequence

from geo3d.errors import InvalidInputError

def _make_data(name: str, split: str, size: int, seed: int, num_points: Optional[int],
               task: str):
    """Build a dataset by CLI name; returns (dataset, in_channels, class names)."""
    from geo3d.datasets.by_name import make_dataset

    named = make_dataset(name, split, size, seed=seed, num_points=num_points, task=task)
    return named.dataset, named.in_channels, named.class_names


def _model_args(pairs: Sequence[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--model-arg must look like KEY=VALUE, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _task_of(model_name: str) -> str:
    return "classification" if model_name.endswith("_cls") else "segmentation"


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _print_metrics(metrics: dict) -> None:
    print("  ".join(f"{k} {metrics[k]:.4f}" for k in ("loss", "OA", "mAcc", "mIoU") if k in metrics))
    for name, value in metrics.get("iou", {}).items():
        print(f"  IoU {name:<24} {value:.4f}  ({metrics['support'][name]:,} points)")


def _cmd_train(args: argparse.Namespace) -> int:
    from geo3d import models
    from geo3d.tasks import TrainConfig, seed_everything, train

    task = _task_of(args.model)
    train_set, in_channels, names = _make_data(args.data, "train", args.size, args.seed,
                                               args.num_points, task)
    val_set = None if args.val_size == 0 else _make_data(
        args.data, "val", args.val_size, args.seed, args.num_points, task)[0]
    kwargs = {"in_channels": in_channels, "num_classes": len(names), **_model_args(args.model_arg)}
    seed_everything(args.seed)   # the initial weights follow --seed
    model = models.create(args.model, **kwargs)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, out_dir=args.out, resume=args.resume,
                         num_workers=args.workers, device=args.device, progress=not args.quiet,
                         max_minutes=args.max_minutes, log_every=args.log_every,
                         warmup_steps=args.warmup_steps, schedule=args.schedule)
    metadata = {"data": args.data, "num_points": args.num_points, "seed": args.seed,
                "size": args.size, "val_size": args.val_size}
    result = train(model, train_set, config, val_dataset=val_set, model_name=args.model,
                   model_kwargs=kwargs, class_names=names, num_classes=len(names),
                   metadata=metadata)
    if _is_rank0():
        print(f"trained {args.model} for {result.epochs} epochs ({result.steps} steps, "
              f"{result.stopped}); checkpoints in {Path(args.out).resolve()}")
        if result.final is not None:
            _print_metrics(result.final)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from geo3d import models
    from geo3d.tasks import evaluate, load_checkpoint

    state = load_checkpoint(args.checkpoint)
    if not state.get("model_name"):
        raise InvalidInputError(f"checkpoint {args.checkpoint!r} has no model name: it was not "
                                f"written by geo3d train, so the model cannot be rebuilt")
    meta = state.get("metadata") or {}
    model = models.create(state["model_name"], **state.get("model_kwargs", {}))
    model.load_state_dict(state["model"])
    data = args.data or meta.get("data")
    if data is None:
        raise InvalidInputError("--data is needed: the checkpoint names no dataset")
    num_points = args.num_points if args.num_points is not None else meta.get("num_points")
    seed = args.seed if args.seed is not None else meta.get("seed", 0)
    dataset, _, names = _make_data(data, args.split, args.size, seed, num_points, model.task)
    metrics = evaluate(model, dataset, batch_size=args.batch_size,
                       num_classes=state.get("num_classes"), class_names=names,
                       progress=not args.quiet)
    print(f"{state['model_name']} (epoch {state['epoch']}, step {state['step']}) on {data} "
          f"{args.split} ({len(dataset)} samples):")
    _print_metrics(metrics)
    return 0


def register(sub) -> None:
    """Add ``train`` and ``eval`` to the sub-parsers."""
    tr = sub.add_parser("train", help="train a registered model on a synthetic dataset")
    tr.add_argument("--model", required=True, help="registry name, e.g. dgcnn_seg")
    tr.add_argument("--data", default="synthetic-lidar",
                    help="dataset name, see geo3d.datasets.list_datasets() (default: %(default)s)")
    tr.add_argument("--out", required=True, help="folder for checkpoints and logs")
    tr.add_argument("--epochs", type=int, default=10)
    tr.add_argument("--batch-size", type=int, default=4, help="per process (default: %(default)s)")
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--warmup-steps", type=int, default=0)
    tr.add_argument("--size", type=int, default=16, help="training samples (default: %(default)s)")
    tr.add_argument("--val-size", type=int, default=4, help="validation samples, 0 for none")
    tr.add_argument("--num-points", type=int, default=None,
                    help="points per sample (LiDAR: random subset; shapes: points sampled)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--resume", action="store_true", help="resume from OUT/last.pt if present")
    tr.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this")
    tr.add_argument("--schedule", choices=("steps", "time"), default="steps",
                    help="pace the cosine decay by steps (default, reproducible) or by the clock "
                         "(needs --max-minutes: the decay ends when the time runs out)")
    tr.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    tr.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    tr.add_argument("--log-every", type=int, default=10)
    tr.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="extra model keyword argument, e.g. --model-arg k=10 (repeatable)")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint written by geo3d train")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--data", default=None, help="dataset name (default: the training data)")
    ev.add_argument("--split", default="val", choices=["train", "val", "test"])
    ev.add_argument("--size", type=int, default=4)
    ev.add_argument("--num-points", type=int, default=None, help="default: as in training")
    ev.add_argument("--seed", type=int, default=None, help="default: as in training")
    ev.add_argument("--batch-size", type=int, default=4)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_cmd_eval)
