"""The training loop: AdamW + warm-up/cosine schedule, checkpoints, resume, logs and DDP.

Built on plain PyTorch (``torch.optim.AdamW``, ``LambdaLR``, ``DistributedDataParallel``,
``DistributedSampler``) and ``torch_geometric.loader.DataLoader``, with tqdm bars. We
wrote the loop rather than use Lightning: Lightning is not a geo3d dependency, and exact
reproducibility and mid-epoch resume need control over every source of randomness.

Reproducibility: the shuffling of epoch ``e`` is a ``DistributedSampler`` permutation
seeded by ``(seed, e)`` (also with one process), DataLoader worker seeds come from a
generator seeded by ``(seed, e)``, and checkpoints store the torch / CUDA / numpy /
``random`` states. The same seed gives bit-identical weights on CPU, and a run stopped
(``max_steps``, ``max_minutes``, or killed after a checkpoint) and resumed ends with the
same weights as an uninterrupted run.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from geo3d.errors import InvalidInputError
from geo3d.tasks.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from geo3d.tasks.config import TrainConfig
from geo3d.tasks.distributed import (DistInfo, all_reduce, broadcast_buffers, init_distributed,
                                     resolve_device)
from geo3d.tasks.evaluate import check_model, evaluate, key_metric, move_batch
from geo3d.tasks.logging import RunLogger

__all__ = ["train", "TrainResult", "seed_everything", "cosine_schedule"]

@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: One dict per logged row (``epoch``, ``step``, ``split`` "train"/"val",
            ``loss``, ``lr`` or the validation metrics), in order, resumed runs included.
        best: Best validation metrics (by mIoU for segmentation, OA for classification,
            the evaluator's ``key_metric`` for other tasks) with their ``epoch`` and
            ``step``; None without a validation set.
        final: The last validation metrics, or None.
        epochs: Finished epochs; ``steps``: optimizer steps in total.
        stopped: ``"completed"``, ``"max_steps"`` or ``"max_minutes"``.
        last_checkpoint, best_checkpoint: Paths written (None without ``out_dir``).
    """

    history: list = field(default_factory=list)
    best: Optional[dict] = None
    final: Optional[dict] = None
    epochs: int = 0
    steps: int = 0
    stopped: str = "completed"
    last_checkpoint: Optional[Path] = None
    best_checkpoint: Optional[Path] = None


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy and ``random`` follow the worker's torch seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def cosine_schedule(step: int, total_steps: int, warmup_steps: int = 0,
                    min_lr_ratio: float = 0.0, elapsed_fraction: float = 0.0) -> float:
    """Learning-rate factor at ``step``: linear warm-up, then cosine decay to ``min_lr_ratio``.

    After the warm-up the decay's progress is the larger of the step fraction and
    ``elapsed_fraction`` (the spent fraction of a time budget; 0: paced by steps only).

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017 (one cycle, no restarts).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, max((step - warmup_steps) / span, elapsed_fraction))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _resume_path(config: TrainConfig) -> Optional[Path]:
    if config.resume is False:
        return None
    if config.resume is True:
        path = Path(config.out_dir) / "last.pt"
        return path if path.is_file() else None
    return Path(config.resume)


def _check_dataset(dataset: object, name: str) -> None:
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise InvalidInputError(f"{name} must be a Dataset (with __len__ and __getitem__), "
                                f"got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise InvalidInputError(f"{name} is empty")


def train(model: nn.Module, dataset: Dataset, config: TrainConfig,
          val_dataset: Optional[Dataset] = None, *, model_name: Optional[str] = None,
          model_kwargs: Optional[dict] = None, class_names: Optional[Sequence[str]] = None,
          num_classes: Optional[int] = None, metadata: Optional[dict] = None) -> TrainResult:
    """Train ``model`` in place on ``dataset`` with AdamW and a warm-up + cosine schedule.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) or an initialised process group, the model is
    wrapped in ``DistributedDataParallel``, each rank reads its ``DistributedSampler``
    share (``batch_size`` is per process) and only rank 0 writes files or shows bars.

    Args:
        model: A geo3d model: ``model(batch)`` gives its outputs (logits),
            ``model.loss(outputs, batch)`` the loss, ``model.task`` names the task; a
            task other than "segmentation"/"classification" also needs
            ``model.make_evaluator()`` (see :class:`geo3d.tasks.evaluate.TaskEvaluator`).
            Floating data is cast to the dtype of its parameters (float64 works).
        dataset: Torch Dataset of ``Data`` (batched by ``torch_geometric.loader.DataLoader``).
        config: :class:`TrainConfig`. The schedule always spans ``config.epochs``;
            ``max_steps`` / ``max_minutes`` only stop early (with a resumable checkpoint).
        val_dataset: Evaluated every ``eval_every`` epochs with :func:`evaluate`.
        model_name, model_kwargs: Stored in checkpoints so ``geo3d eval`` can rebuild the
            model with ``geo3d.models.create(model_name, **model_kwargs)``.
        class_names, num_classes: For the validation metrics (see :func:`evaluate`).
        metadata: Plain values stored in checkpoints under ``"metadata"`` (e.g. how the
            data was made, so ``geo3d eval`` can rebuild it).

    Returns:
        A :class:`TrainResult`. Checkpoints: ``out_dir/last.pt`` (every
        ``checkpoint_every`` epochs, at the end and when stopped early) and
        ``out_dir/best.pt`` (best validation metric); logs: ``out_dir/log.csv``, ``out_dir/tb``.

    Raises:
        InvalidInputError: Bad model, config or dataset, or a non-finite gradient norm
            (the message gives the step; lower ``lr`` or set ``grad_clip``).
        FileFormatError: An unreadable checkpoint to resume from.
    """
    task = check_model(model)
    if not isinstance(config, TrainConfig):
        raise InvalidInputError(f"config must be a TrainConfig, got {type(config).__name__}")
    _check_dataset(dataset, "dataset")
    if val_dataset is not None:
        _check_dataset(val_dataset, "val_dataset")
    info = init_distributed(config.device)
    try:
        return _Trainer(model, task, dataset, config, val_dataset, info,
                        dict(model_name=model_name, model_kwargs=dict(model_kwargs or {}),
                             class_names=None if class_names is None else list(class_names),
                             num_classes=num_classes, metadata=dict(metadata or {}))).run()
    finally:
        info.close()


class _Trainer:
    """The state of one run (kept in one object so that :func:`train` stays readable)."""

    def __init__(self, model: nn.Module, task: str, dataset: Dataset, config: TrainConfig,
                 val_dataset: Optional[Dataset], info: DistInfo, meta: dict) -> None:
        self.config, self.task, self.info, self.meta = config, task, info, meta
        self.dataset, self.val_dataset = dataset, val_dataset
        self.device = resolve_device(config.device, info.local_rank)
        self.model = model.to(self.device)
        self.dtype = next((p.dtype for p in model.parameters()), None)
        self.sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                          shuffle=True, seed=config.seed, drop_last=False)
        per_rank = len(self.sampler)
        # A batch of one sample breaks BatchNorm on pooled features: drop such a tail.
        self.drop_last = config.batch_size > 1 and per_rank % config.batch_size == 1
        self.steps_per_epoch = per_rank // config.batch_size if self.drop_last \
            else math.ceil(per_rank / config.batch_size)
        if self.steps_per_epoch == 0:
            raise InvalidInputError(f"dataset of {len(dataset)} samples gives no batch of "
                                    f"batch_size={config.batch_size} per process")
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        total = config.epochs * self.steps_per_epoch
        self.minutes_before, self.started, self.minutes_agreed = 0.0, None, 0.0

        def factor(step: int) -> float:  # a plain function: LambdaLR does not store it
            spent = self.minutes_agreed / config.max_minutes if config.schedule == "time" else 0.0
            return cosine_schedule(step, total, config.warmup_steps, config.min_lr_ratio, spent)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.out_dir = None if config.out_dir is None else Path(config.out_dir)
        self.result = TrainResult()
        self.epoch = self.batch_in_epoch = self.step = 0
        self._resume()
        self.net = model
        if info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=config.find_unused_parameters)
        writes = info.is_main and self.out_dir is not None
        if writes:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.logger = RunLogger(self.out_dir if writes else None,
                                tensorboard=config.tensorboard and writes,
                                resume_step=self.step if self._resumed else None)

    def _resume(self) -> None:
        self._resumed = False
        path = _resume_path(self.config)
        if path is None:
            seed_everything(self.config.seed)
            return
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        set_rng_state(state["rng"])
        self.result.history = list(state.get("history", []))
        self.result.best = state.get("best")
        self.minutes_before = self.minutes_agreed = float(state.get("minutes", 0.0))
        self._resumed = True

    # ---------------------------------------------------------------- files
    def _save(self, name: str) -> Optional[Path]:
        if not self.info.is_main or self.out_dir is None:
            return None
        return save_checkpoint(self.out_dir / name, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch, "step": self.step, "rng": get_rng_state(),
            "config": self.config.to_dict(), "task": self.task, "best": self.result.best,
            "history": self.result.history, "minutes": self._minutes(), **self.meta,
        })

    def _log(self, row: dict) -> None:
        self.result.history.append(dict(row))
        if self.info.is_main:
            self.logger.log(row)

    # ---------------------------------------------------------------- loop
    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)[skip_batches * self.config.batch_size:]
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return DataLoader(self.dataset, batch_size=self.config.batch_size, sampler=indices,
                          num_workers=self.config.num_workers, drop_last=self.drop_last,
                          generator=generator, worker_init_fn=_seed_worker)

    def _minutes(self) -> float:
        """Training minutes so far, those before a resume included."""
        run = 0.0 if self.started is None else (time.monotonic() - self.started) / 60
        return self.minutes_before + run

    def _should_stop(self) -> Optional[str]:
        c = self.config
        if c.max_steps is not None and self.step >= c.max_steps:
            return "max_steps"
        if c.max_minutes is None:
            return None
        # ranks agree on the clock: it paces their learning rate (schedule="time")
        clock = torch.tensor(self._minutes(), dtype=torch.float64)
        self.minutes_agreed = float(all_reduce(clock, "max"))
        counted = self.minutes_agreed - (0.0 if c.schedule == "time" else self.minutes_before)
        return "max_minutes" if counted >= c.max_minutes else None

    def _train_step(self, batch) -> tuple[float, float]:
        """One optimizer step; returns the loss and the learning rate it used."""
        batch = move_batch(batch, self.device, self.dtype)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.net(batch)
        loss = self.model.loss(logits, batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              self.config.grad_clip or float("inf"))
        if not torch.isfinite(norm):
            raise InvalidInputError(f"gradient norm is {float(norm)} at step {self.step + 1} "
                                    f"(loss {float(loss.detach())}); lower lr or set grad_clip")
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return float(loss.detach()), lr

    def _validate(self) -> None:
        broadcast_buffers(self.model)
        m = evaluate(self.model, self.val_dataset, batch_size=self.config.batch_size,
                     num_classes=self.meta["num_classes"], class_names=self.meta["class_names"],
                     num_workers=self.config.num_workers, progress=self.config.progress)
        row = {"epoch": self.epoch, "step": self.step, "split": "val", **m}
        self._log(row)
        self.result.final = row
        key, higher = key_metric(self.model)
        best, value = self.result.best, m[key]
        if best is None or (not math.isnan(value)
                            and (value > best[key] if higher else value < best[key])):
            self.result.best = row
            self.result.best_checkpoint = self._save("best.pt") or self.result.best_checkpoint

    def run(self) -> TrainResult:
        c, stopped = self.config, None
        start = self.started = time.monotonic()
        show = c.progress and self.info.is_main
        window, count = 0.0, 0
        while self.epoch < c.epochs and stopped is None:
            loader = self._loader(self.epoch, self.batch_in_epoch)
            bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{c.epochs}", disable=not show,
                       initial=self.batch_in_epoch, total=self.steps_per_epoch, leave=False)
            for batch in bar:
                loss, lr = self._train_step(batch)
                self.batch_in_epoch += 1
                window, count = window + loss, count + 1
                if self.step % c.log_every == 0:
                    mean = all_reduce(torch.tensor([window, count], dtype=torch.float64))
                    self._log({"epoch": self.epoch, "step": self.step, "split": "train",
                               "loss": float(mean[0] / mean[1]), "lr": lr,
                               "seconds": round(time.monotonic() - start, 3)})
                    bar.set_postfix(loss=f"{float(mean[0] / mean[1]):.4f}", lr=f"{lr:.2e}")
                    window, count = 0.0, 0
                stopped = self._should_stop()
                if stopped:
                    break
            bar.close()
            if self.batch_in_epoch < self.steps_per_epoch:  # stopped inside the epoch
                break
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            last = self.epoch == c.epochs or stopped is not None
            if self.val_dataset is not None and (self.epoch % c.eval_every == 0 or last):
                self._validate()
            if self.epoch % c.checkpoint_every == 0 or last:
                self.result.last_checkpoint = self._save("last.pt")
        if stopped is not None and self.batch_in_epoch:
            self.result.last_checkpoint = self._save("last.pt")
        broadcast_buffers(self.model)
        self.logger.close()
        self.result.epochs, self.result.steps = self.epoch, self.step
        self.result.stopped = stopped or "completed"
        if self.out_dir is not None and self.info.is_main:  # e.g. resumed a finished run
            for attr, name in (("last_checkpoint", "last.pt"), ("best_checkpoint", "best.pt")):
                if getattr(self.result, attr) is None and (self.out_dir / name).is_file():
                    setattr(self.result, attr, self.out_dir / name)
        return self.result
