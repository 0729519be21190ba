"""Evaluation loop: loss and metrics of a model over a dataset.

The batches come from ``torch_geometric.loader.DataLoader``. Segmentation and
classification metrics come from :mod:`geo3d.tasks.metrics` (one confusion matrix for the
whole dataset). Any other task (detection, hand pose...) brings its own metrics: the model
has ``make_evaluator()``, which returns a :class:`TaskEvaluator`. Under an initialised
process group every rank evaluates its share (``rank::world_size``, no padding, so nothing
is counted twice) and the counts (or evaluators) are combined over ranks.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from geo3d.errors import InvalidInputError
from geo3d.tasks.distributed import all_reduce, is_main_process
from geo3d.tasks.metrics import ConfusionMatrix, metrics_from_confusion

__all__ = ["evaluate", "move_batch", "check_model", "TaskEvaluator", "key_metric"]

_TASKS = ("segmentation", "classification")
_KEY_METRIC = {"segmentation": "mIoU", "classification": "OA"}


@runtime_checkable
class TaskEvaluator(Protocol):
    """Metrics of a task other than segmentation/classification, made by ``model.make_evaluator()``.

    Attributes:
        key_metric: The name, among the keys ``compute()`` returns, by which ``train``
            picks the best checkpoint.
        higher_is_better: Whether a larger ``key_metric`` is better.
    """

    key_metric: str
    higher_is_better: bool

    def update(self, outputs: Any, batch: Any) -> None:
        """Add one batch: ``outputs = model(batch)`` in eval mode, without gradients."""

    def merge(self, other: "TaskEvaluator") -> None:
        """Add the state of another evaluator (another DDP rank's share of the data)."""

    def compute(self) -> dict:
        """The metrics: floats, or dicts of floats (e.g. per class)."""


def check_model(model: object) -> str:
    """Check the model contract (nn.Module, ``task``, ``loss``, evaluator); return the task."""
    inner = getattr(model, "module", model)  # DistributedDataParallel wrapper
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be an nn.Module, got {type(model).__name__}")
    task = getattr(inner, "task", None)
    if not isinstance(task, str) or not task:
        raise InvalidInputError(f"model.task must be a non-empty string, got {task!r}")
    if not callable(getattr(inner, "loss", None)):
        raise InvalidInputError("model must have a method loss(logits, data)")
    if task not in _TASKS and not callable(getattr(inner, "make_evaluator", None)):
        raise InvalidInputError(f"model.task is {task!r}, not one of {_TASKS}, so the model "
                                f"must have make_evaluator() returning its metrics")
    return task


def key_metric(model: nn.Module) -> tuple[str, bool]:
    """The metric that ranks checkpoints of ``model``, and whether higher is better."""
    inner = getattr(model, "module", model)
    task = check_model(model)
    if task in _TASKS:
        return _KEY_METRIC[task], True
    evaluator = inner.make_evaluator()
    return evaluator.key_metric, bool(evaluator.higher_is_better)


def move_batch(batch, device: torch.device, dtype: Optional[torch.dtype]):
    """Move a batch to ``device`` and cast its floating tensors to ``dtype`` (a copy)."""
    batch = batch.to(device)
    if dtype is not None:
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
                batch[key] = value.to(dtype)
    return batch


def _param_device_dtype(model: nn.Module) -> tuple[torch.device, Optional[torch.dtype]]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), None


def _shard(dataset: Dataset) -> Dataset:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Subset(dataset, range(dist.get_rank(), len(dataset), dist.get_world_size()))
    return dataset


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 8,
             num_classes: Optional[int] = None, class_names: Optional[Sequence[str]] = None,
             ignore_index: int = -1, num_workers: int = 0, progress: bool = False) -> dict:
    """Loss and metrics of ``model`` on ``dataset``, in eval mode and without gradients.

    Args:
        model: A geo3d model (``task``, ``loss(logits, data)``; see the model contract),
            evaluated on the device and dtype of its parameters. Its train/eval mode is
            restored afterwards.
        dataset: A torch Dataset of ``Data`` with ``y`` ([N] per point for segmentation,
            one label per sample for classification).
        batch_size: Samples per batch. Default 8.
        num_classes: Number of classes C; None: the width of the logits.
        class_names: Names of the C classes for the per-class dicts; None: "0", "1"...
        ignore_index: Target label skipped by the metrics and the loss. Default -1.
        num_workers: DataLoader workers. Default 0.
        progress: Show a tqdm bar. Default False.

    Returns:
        ``{"loss", "OA", "mAcc", "acc": {class: recall}, "support": {class: count},
        "num_samples"}``, plus ``"mIoU"`` and ``"iou": {class: IoU}`` for segmentation.
        ``loss`` is the mean per-target cross-entropy over the whole dataset. See
        :mod:`geo3d.tasks.metrics.segmentation` for the metric conventions (classes absent
        from both prediction and target are left out of mIoU). Other tasks:
        ``{"loss", **evaluator.compute(), "num_samples"}`` with the evaluator from
        ``model.make_evaluator()`` and ``loss`` the mean of ``model.loss`` per sample
        (``num_classes``, ``class_names`` and ``ignore_index`` are not used).

    Raises:
        InvalidInputError: Bad model, empty dataset, labels outside ``0..C-1``.
    """
    task = check_model(model)
    inner = getattr(model, "module", model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if len(dataset) == 0:
        raise InvalidInputError("dataset is empty")
    device, dtype = _param_device_dtype(inner)
    # An own generator: creating the loader iterator must not draw from the global RNG,
    # so evaluating inside a training run leaves that run's random stream unchanged.
    loader = DataLoader(_shard(dataset), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    bar = {"desc": "eval", "disable": not (progress and is_main_process()), "leave": False}
    if task not in _TASKS:
        return _evaluate_task(inner, tqdm(loader, **bar), device, dtype, len(dataset))
    cm: Optional[ConfusionMatrix] = None
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(loader, **bar):
                batch = move_batch(batch, device, dtype)
                logits = inner(batch)
                if cm is None:
                    cm = ConfusionMatrix(num_classes or int(logits.shape[-1]), ignore_index)
                target = batch.y.reshape(-1)
                if target.shape[0] != logits.shape[0]:
                    raise InvalidInputError(f"{task} model gave {logits.shape[0]} rows of logits "
                                            f"but data.y has {target.shape[0]} labels")
                cm.update(logits, target)
                valid = int((target != ignore_index).sum())
                if valid:
                    loss_sum += float(inner.loss(logits, batch)) * valid
                    count += valid
    finally:
        inner.train(was_training)
    if num_classes is None:  # a rank with no samples must still join the reductions
        num_classes = int(all_reduce(torch.tensor(0 if cm is None else cm.num_classes), "max"))
    matrix = cm.matrix if cm is not None else torch.zeros(num_classes, num_classes, dtype=torch.long)
    matrix = all_reduce(matrix)
    totals = all_reduce(torch.stack([loss_sum, count]))
    out = metrics_from_confusion(matrix, class_names)
    result = {"loss": float(totals[0] / totals[1]) if totals[1] > 0 else float("nan"),
              "OA": out["OA"], "mAcc": out["mAcc"]}
    if task == "segmentation":
        result.update(mIoU=out["mIoU"], iou=out["iou"])
    result.update(acc=out["acc"], support=out["support"], num_samples=len(dataset))
    return result



def _evaluate_task(model: nn.Module, batches, device: torch.device,
                   dtype: Optional[torch.dtype], num_samples: int) -> dict:
    """:func:`evaluate` for a task with its own evaluator (see :class:`TaskEvaluator`)."""
    import torch.distributed as dist

    evaluator = model.make_evaluator()
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                batch = move_batch(batch, device, dtype)
                outputs = model(batch)
                evaluator.update(outputs, batch)
                loss_sum += float(model.loss(outputs, batch)) * batch.num_graphs
                count += batch.num_graphs
    finally:
        model.train(was_training)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shares: list = [None] * dist.get_world_size()
        dist.all_gather_object(shares, evaluator)
        evaluator = model.make_evaluator()
        for share in shares:
            evaluator.merge(share)
    totals = all_reduce(torch.stack([loss_sum, count]))
    loss = float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")
    return {"loss": loss, **evaluator.compute(), "num_samples": num_samples}
