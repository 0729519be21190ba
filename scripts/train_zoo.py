"""Train the small checkpoints of the model zoo and record the figures they reach.

Each recipe below names a registry model, the keyword arguments that build it, the
training data and the fixed test split (arguments of
:func:`geo3d.datasets.by_name.make_dataset`), and a fixed number of epochs (a step budget,
not a time budget, so a run gives the same weights on any machine with the same
libraries). The trained weights and their test metrics go to ``geo3d/models/zoo`` with
:func:`geo3d.models.pretrained.save_pretrained`; ``tests/models/test_pretrained.py``
re-evaluates every entry and fails when a metric drops by more than its tolerance.

The detector (``pointnet2_det``) and the temporal-reuse network (``local_seg``) come from
their benchmark scripts; their entries in ``zoo.json`` record those commands.

Run: ``python scripts/train_zoo.py [--only NAME ...] [--device cpu|cuda] [--zoo DIR]``
(about 5-10 minutes per recipe on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data


@dataclass(frozen=True)
class Recipe:
    """How one zoo checkpoint is trained and tested."""

    model: str
    model_kwargs: dict
    train: dict
    evaluation: dict
    epochs: int
    batch_size: int = 2
    lr: float = 2e-3
    tolerance: float = 0.01
    rotate_z: bool = False  # augment: random rotation about +z and mirror y -> -y
    frequency_weights: bool = False  # class_weights from the training labels
    extra: dict = field(default_factory=dict)


RECIPES = {
    "pointnet2_seg": Recipe(  # semantic segmentation of LiDAR frames
        "pointnet2_seg",
        dict(in_channels=3, num_classes=8, width=16, ratios=(0.25,) * 5,
             radii=(0.5, 1.0, 2.0, 4.0, 8.0), dropout=0.0, lovasz_weight=1.0),
        train=dict(name="synthetic-lidar", split="train", size=128, num_points=8192,
                   features="lidar"),
        evaluation=dict(name="synthetic-lidar", split="test", size=4, seed=0, num_points=8192,
                        features="lidar"),
        epochs=30, lr=3e-3, rotate_z=True, frequency_weights=True),
    "pointnet2_cls": Recipe(  # shape classification
        "pointnet2_cls", dict(in_channels=3, num_classes=8, width=16),
        train=dict(name="synthetic-shapes", split="train", size=400, num_points=1024),
        evaluation=dict(name="synthetic-shapes", split="test", size=50, seed=0, num_points=1024),
        epochs=12, batch_size=16, lr=2e-3),
    "gem_corr": Recipe(  # dense correspondence on meshes
        "gem_corr", dict(in_channels=2, num_classes=1236, width=16, order=1, levels=4),
        train=dict(name="synthetic-meshes", split="train", size=64),
        evaluation=dict(name="synthetic-meshes", split="test", size=4, seed=0),
        epochs=25, batch_size=4, lr=3e-3),
    "hand_pose_small": Recipe(  # hand pose from a full depth frame
        "hand_pose_small", dict(),
        train=dict(name="synthetic-hands", split="train", size=2000, width=160, height=120),
        evaluation=dict(name="synthetic-hands", split="test", size=100, seed=0, width=160,
                        height=120),  # 16 frames scored retrainings 26 and 49 mm: too few
        epochs=6, batch_size=8, lr=2e-3, tolerance=1.0),  # mm of mean joint error
}


class RotateZ(Dataset):
    """Each access rotates ``pos`` by a random angle about +z and mirrors ``y -> -y`` half
    of the time (torch's global generator, which ``geo3d.tasks.train`` seeds). ``x`` columns
    of :func:`geo3d.datasets.features.lidar_features` are invariant to both."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Data:
        item = self.dataset[index].clone()
        a = float(torch.rand(())) * 2 * math.pi
        c, s = math.cos(a), math.sin(a)
        rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=item.pos.dtype)
        if bool(torch.rand(()) < 0.5):
            rot = rot @ torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=item.pos.dtype))
        item.pos = item.pos @ rot.T
        return item


def _dataset(spec: dict, task: str):
    from geo3d.datasets.by_name import make_dataset

    spec = dict(spec)
    spec.setdefault("task", task)
    return make_dataset(spec.pop("name"), spec.pop("split"), spec.pop("size"), **spec)


def _scalars(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "num_samples"}


def train_recipe(name: str, recipe: Recipe, device: str, zoo_dir: Path | None,
                 out_dir: Path) -> dict:
    """Train ``recipe``, test it on its evaluation split and save it into the zoo."""
    from geo3d import models
    from geo3d.models.heads.losses import frequency_class_weights
    from geo3d.models.pretrained import save_pretrained
    from geo3d.tasks import TrainConfig, evaluate, seed_everything, train

    seed_everything(0)
    task = models.create(recipe.model, **recipe.model_kwargs).task
    train_data = _dataset(recipe.train, task)
    kwargs = dict(recipe.model_kwargs)
    if kwargs.get("num_classes", len(train_data.class_names)) != len(train_data.class_names):
        raise SystemExit(f"{name}: the recipe's num_classes={kwargs['num_classes']} but its "
                         f"training data has {len(train_data.class_names)} classes")
    items = [train_data.dataset[i] for i in range(len(train_data.dataset))]  # simulate once
    if recipe.frequency_weights:
        kwargs["class_weights"] = frequency_class_weights((d.y for d in items),
                                                          kwargs["num_classes"])
    dataset = RotateZ(items) if recipe.rotate_z else items
    seed_everything(0)
    model = models.create(recipe.model, **kwargs)
    steps = recipe.epochs * math.ceil(len(items) / recipe.batch_size)
    config = TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                         seed=0, warmup_steps=min(50, steps // 20), grad_clip=10.0,
                         device=device, tensorboard=False, out_dir=str(out_dir / name),
                         eval_every=recipe.epochs)
    start = time.perf_counter()
    train(model, dataset, config, model_name=recipe.model, model_kwargs=kwargs,
          class_names=train_data.class_names, num_classes=len(train_data.class_names))
    minutes = (time.perf_counter() - start) / 60
    model = model.cpu().eval()
    test = _dataset(recipe.evaluation, task)
    metrics = _scalars(evaluate(model, test.dataset, batch_size=recipe.batch_size,
                                class_names=test.class_names))
    save_pretrained(recipe.model, model, kwargs, metrics, recipe.evaluation,
                    command=f"python scripts/train_zoo.py --only {name}", tolerance=recipe.tolerance,
                    zoo_dir=zoo_dir, batch_size=recipe.batch_size, train=recipe.train,
                    epochs=recipe.epochs, steps=steps, **recipe.extra)
    print(f"{name}: {steps} steps in {minutes:.1f} min; test {metrics}", flush=True)
    return metrics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(RECIPES), default=None,
                    help="recipes to run (default: all)")
    ap.add_argument("--device", default="cpu", help="training device: cpu, cuda (default cpu)")
    ap.add_argument("--zoo", type=Path, default=None,
                    help="zoo folder (default: the package's geo3d/models/zoo)")
    ap.add_argument("--out", type=Path, default=Path("out/zoo"),
                    help="folder for the training logs and checkpoints (default out/zoo)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch sees no CUDA GPU on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.only or sorted(RECIPES):
        train_recipe(name, RECIPES[name], args.device, args.zoo, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
