"""The training configuration: one frozen, validated dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Union

from geo3d.errors import InvalidInputError

__all__ = ["TrainConfig"]


def _int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")


def _float(name: str, value: object, low: float, allow_low: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= low if allow_low else value > low)
    if not ok:
        op = ">=" if allow_low else ">"
        raise InvalidInputError(f"{name} must be a finite number {op} {low}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`geo3d.tasks.train`.

    Args:
        epochs: Passes over the training set (>= 1). Default 10.
        batch_size: Samples per step and per process (>= 1). Default 8.
        lr: Peak learning rate of AdamW (> 0). Default 1e-3.
        weight_decay: AdamW decoupled weight decay (>= 0). Default 1e-2.
        warmup_steps: Linear warm-up steps from 0 to ``lr``, then a cosine decay to
            ``lr * min_lr_ratio`` at the last step. Default 0.
        min_lr_ratio: Final learning rate as a fraction of ``lr`` (0..1). Default 0.
        grad_clip: Clip the global gradient norm to this value; None: no clipping.
        seed: Seeds torch, numpy, random, the shuffling and the DataLoader workers. Default 0.
        num_workers: DataLoader worker processes. Default 0.
        out_dir: Folder for checkpoints (``last.pt``, ``best.pt``), ``log.csv`` and
            TensorBoard events (``tb/``); None: write nothing. Default None.
        checkpoint_every: Write ``last.pt`` every this many epochs (and at the end). Default 1.
        resume: False: start afresh; True: resume from ``out_dir/last.pt`` if it exists;
            a path: resume from that checkpoint. Default False.
        log_every: Log the training loss every this many steps. Default 10.
        eval_every: Evaluate on the validation set every this many epochs (and at the end).
            Default 1.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
        progress: Show tqdm progress bars (rank 0 only). Default True.
        max_steps: Stop after this many optimizer steps in total (with a resumable
            checkpoint); None: no limit. The cosine schedule always spans
            ``epochs * steps_per_epoch``, so a stopped run resumes exactly.
        max_minutes: Stop (and checkpoint) after this much wall time; None: no limit.
        schedule: ``"steps"`` (default): the cosine schedule is paced by the step count, so
            a run is bit-identical whatever the machine's speed. ``"time"`` (needs
            ``max_minutes``): it is paced by whichever comes first, the planned steps or
            the clock (progress ``max(step / total, minutes / max_minutes)``), so the
            learning rate reaches its end value when the time budget runs out even if the
            machine is slower than planned; ``max_minutes`` then counts the whole run,
            across resumes. Not bit-identical between runs.
        tensorboard: Also write TensorBoard events (needs the ``tensorboard`` package).
            Default True.
        find_unused_parameters: Passed to DistributedDataParallel. Default False.
    """

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: Optional[float] = None
    seed: int = 0
    num_workers: int = 0
    out_dir: Optional[Union[str, Path]] = None
    checkpoint_every: int = 1
    resume: Union[bool, str, Path] = False
    log_every: int = 10
    eval_every: int = 1
    device: str = "auto"
    progress: bool = True
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = None
    schedule: str = "steps"
    tensorboard: bool = True
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("warmup_steps", 0), ("seed", 0),
                          ("num_workers", 0), ("checkpoint_every", 1), ("log_every", 1),
                          ("eval_every", 1)):
            _int(name, getattr(self, name), low)
        _float("lr", self.lr, 0.0, allow_low=False)
        _float("weight_decay", self.weight_decay, 0.0)
        _float("min_lr_ratio", self.min_lr_ratio, 0.0)
        if self.min_lr_ratio > 1:
            raise InvalidInputError(f"min_lr_ratio must be <= 1, got {self.min_lr_ratio!r}")
        if self.grad_clip is not None:
            _float("grad_clip", self.grad_clip, 0.0, allow_low=False)
        if self.max_steps is not None:
            _int("max_steps", self.max_steps, 1)
        if self.max_minutes is not None:
            _float("max_minutes", self.max_minutes, 0.0, allow_low=False)
        if self.schedule not in ("steps", "time"):
            raise InvalidInputError(f"schedule must be 'steps' or 'time', got {self.schedule!r}")
        if self.schedule == "time" and self.max_minutes is None:
            raise InvalidInputError("schedule='time' paces the learning rate by max_minutes: set it")
        if self.out_dir is not None and not isinstance(self.out_dir, (str, Path)):
            raise InvalidInputError(f"out_dir must be a path or None, got {self.out_dir!r}")
        if not isinstance(self.resume, (bool, str, Path)):
            raise InvalidInputError(f"resume must be a bool or a path, got {self.resume!r}")
        if self.resume is True and self.out_dir is None:
            raise InvalidInputError("resume=True needs out_dir (it resumes from out_dir/last.pt)")
        if not isinstance(self.device, str) or not (
                self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            raise InvalidInputError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', "
                                    f"got {self.device!r}")
        for name in ("progress", "tensorboard", "find_unused_parameters"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """Plain-Python dict (paths as strings), as stored in checkpoints."""
        d = asdict(self)
        for key in ("out_dir", "resume"):
            if isinstance(d[key], Path):
                d[key] = str(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise InvalidInputError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(f"unknown TrainConfig field(s) {unknown}")
        return cls(**d)
