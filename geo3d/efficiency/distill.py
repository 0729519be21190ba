"""``distill``: knowledge distillation (KD), quantization-aware KD and selective KD.

Our own code on :func:`geo3d.tasks.train` (the distillation lives in the loss of a
:class:`Distiller` wrapper, so training keeps its schedule, checkpoints and DDP):

* ``kd``: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015:
  ``(1 - alpha) * task loss + alpha * T^2 KL(softmax(t / T) || softmax(s / T))``, per row
  of logits (per sample for classification, per point for segmentation).
* ``qkd``: Okuno et al. / Kim et al., "QKD: Quantization-aware Knowledge Distillation",
  2019. The student is fake-quantized with :func:`geo3d.efficiency.quantize`
  (``QuantConfig(method="qat_lsq", bits=...)``: LSQ+ weights and activations), which also
  runs the paper's *self-studying* phase (``qat_steps`` steps on the labels); then the
  *tutoring* phase distils the frozen teacher into it. The paper's middle *co-studying*
  phase (the teacher adapting to the quantized student) is not done.
* ``selective``: a guide in the spirit of DiSK (Kag, Acar, Gangrade & Saligrama,
  "Scaffolding a Student to Instill Knowledge", ICLR 2023), which censors the examples the
  student cannot learn. Ours is a fixed rule, not the paper's learned guide: the
  per-sample teacher-student gap ``KL_i`` (mean over a cloud's points for segmentation)
  gives each sample the KD weight ``sigmoid((q - KL_i) / s)``, ``q`` the batch's
  ``keep_fraction`` quantile of the gaps and ``s`` their standard deviation, normalised
  to mean 1: the student spends its capacity on the inputs within its reach.

``distill`` returns a new student; neither the student nor the teacher given is modified.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from geo3d.errors import InvalidInputError

__all__ = ["DistillConfig", "Distiller", "distill", "kd_loss", "kd_per_row", "selective_weights"]

_METHODS = ("kd", "qkd", "selective")


def kd_per_row(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` per row: ``[R, C] -> [R]``."""
    if student.shape != teacher.shape or student.dim() != 2:
        raise InvalidInputError(f"student and teacher logits must both be [R, C], got "
                                f"{list(student.shape)} and {list(teacher.shape)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0 < temperature < math.inf:
        raise InvalidInputError(f"temperature must be a finite number > 0, got {temperature!r}")
    t = float(temperature)
    log_t = F.log_softmax(teacher.to(student.dtype) / t, dim=1)
    log_s = F.log_softmax(student / t, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(dim=1) * t * t


def kd_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """Hinton's distillation loss, the mean of :func:`kd_per_row` over rows.

    Args:
        student: ``[R, C]`` logits (gradients flow).
        teacher: ``[R, C]`` logits, used as given (detach them yourself).
        temperature: ``T > 0`` (default 1).
    """
    return kd_per_row(student, teacher, temperature).mean()


def selective_weights(gaps: Tensor, keep_fraction: float) -> Tensor:
    """The DiSK-like guide: soft weights favouring samples with a small teacher gap.

    ``w_i = sigmoid((q - gap_i) / s)`` with ``q`` the ``keep_fraction`` quantile of
    ``gaps`` and ``s`` their standard deviation (``1e-8`` at least), normalised to mean 1.

    Shapes:
        ``gaps [S] -> [S]`` (no gradient).
    """
    gaps = gaps.detach()
    if gaps.numel() < 2:
        return torch.ones_like(gaps)
    q = torch.quantile(gaps, keep_fraction)
    w = torch.sigmoid((q - gaps) / gaps.std().clamp_min(1e-8))
    return w / w.mean().clamp_min(1e-12)


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """How to distil.

    Args:
        method: ``"kd"`` (default), ``"qkd"`` or ``"selective"``.
        temperature: softmax temperature ``T`` (default 4).
        alpha: weight of the distillation term, ``1 - alpha`` of the task loss (default 0.9).
        bits: ``qkd``: LSQ+ bits of the student's weights and activations (8, 4 or 2;
            default 4).
        qat_steps: ``qkd``: self-studying steps inside ``quantize`` (default 20).
        keep_fraction: ``selective``: the gap quantile where the guide's weight is 1/2,
            in ``(0, 1]`` (default 0.7).
    """

    method: str = "kd"
    temperature: float = 4.0
    alpha: float = 0.9
    bits: int = 4
    qat_steps: int = 20
    keep_fraction: float = 0.7

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise InvalidInputError(f"method must be one of {_METHODS}, got {self.method!r}")
        checks = (("temperature", 1e-6, math.inf), ("alpha", 0.0, 1.0), ("keep_fraction", 1e-6, 1.0))
        for name, low, high in checks:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high \
                    or not math.isfinite(v):
                raise InvalidInputError(f"{name} must be a finite number in [{low}, {high}], got {v!r}")
        if self.bits not in (2, 4, 8) or isinstance(self.bits, bool):
            raise InvalidInputError(f"bits must be 8, 4 or 2, got {self.bits!r}")
        if isinstance(self.qat_steps, bool) or not isinstance(self.qat_steps, int) or self.qat_steps < 1:
            raise InvalidInputError(f"qat_steps must be an integer >= 1, got {self.qat_steps!r}")


class Distiller(nn.Module):
    """A student trained against a frozen teacher: ``forward`` is the student's, ``loss``
    mixes its task loss with the distillation term (see the module docstring).

    Args:
        student: the model to train (owned).
        teacher: the frozen model (owned; kept in eval mode, no gradients).
        config: a :class:`DistillConfig`.

    Shapes:
        those of the student.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, config: DistillConfig) -> None:
        super().__init__()
        self.student, self.teacher, self.config = student, teacher, config
        self.task: str = student.task
        self.in_channels = getattr(student, "in_channels", None)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.train(student.training)

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, data: object) -> Tensor:
        return self.student(data)

    def loss(self, outputs: Tensor, data: object) -> Tensor:
        """``(1 - alpha) * task loss + alpha * KD`` in training; the task loss in eval mode."""
        task = self.student.loss(outputs, data)
        c = self.config
        if not self.training or c.alpha == 0:
            return task
        with torch.no_grad():
            teacher = self.teacher(data)
        rows = kd_per_row(outputs, teacher, c.temperature)
        if c.method == "selective":
            sample = _row_samples(data, rows.shape[0], self.task)
            n = int(sample.max()) + 1 if sample.numel() else 0
            gaps = rows.detach().new_zeros(n).index_add_(0, sample, rows.detach())
            gaps = gaps / torch.bincount(sample, minlength=n).clamp_min(1)
            rows = rows * selective_weights(gaps, c.keep_fraction)[sample]
        return (1 - c.alpha) * task + c.alpha * rows.mean()


def _row_samples(data: object, rows: int, task: str) -> Tensor:
    """The sample index of each logits row."""
    batch = getattr(data, "batch", None)
    if task == "segmentation" and isinstance(batch, Tensor) and batch.shape[0] == rows:
        return batch
    if task == "segmentation":
        return torch.zeros(rows, dtype=torch.long)
    return torch.arange(rows)


def distill(student: nn.Module, teacher: nn.Module, dataset: Dataset, config: DistillConfig,
            train_config=None, val_dataset: Optional[Dataset] = None) -> nn.Module:
    """Train a copy of ``student`` to match ``teacher`` on ``dataset``.

    Args:
        student: a geo3d model (``task``, ``loss``), float32 for ``qkd``.
        teacher: a geo3d model of the same task and output width.
        dataset: the training Dataset of ``Data``.
        config: a :class:`DistillConfig`.
        train_config: a :class:`geo3d.tasks.TrainConfig` (default: its defaults with
            ``progress=False`` and ``tensorboard=False``).
        val_dataset: optional validation set (see :func:`geo3d.tasks.train`).

    Returns:
        The trained student, a new model (``qkd``: fake-quantized, with ``quant_report``).

    Raises:
        InvalidInputError: bad config, models of different tasks, a model ``quantize``
            cannot handle.
    """
    from geo3d.tasks import TrainConfig, train
    from geo3d.tasks.evaluate import check_model

    if not isinstance(config, DistillConfig):
        raise InvalidInputError(f"config must be a DistillConfig, got {type(config).__name__}")
    tasks = (check_model(student), check_model(teacher))
    if tasks[0] != tasks[1]:
        raise InvalidInputError(f"student and teacher must solve the same task, got {tasks}")
    if train_config is None:
        train_config = TrainConfig(progress=False, tensorboard=False)
    if config.method == "qkd":
        from geo3d.efficiency.quantize import QuantConfig, quantize

        calib = [dataset[i] for i in range(min(len(dataset), config.qat_steps))]
        new_student = quantize(student, QuantConfig(method="qat_lsq", bits=config.bits,
                                                    steps=config.qat_steps), calib)
    else:
        new_student = copy.deepcopy(student)
    wrapper = Distiller(new_student, copy.deepcopy(teacher), config)
    train(wrapper, dataset, train_config, val_dataset)
    return wrapper.student
