"""Confusion-matrix metrics for point-wise and sample-wise classification.

Written here with plain torch (``torch.bincount``), not torchmetrics: torchmetrics is not a
geo3d dependency, and a confusion matrix accumulated over the whole dataset is a few lines.
Every metric is computed from the dataset-wide confusion matrix, never averaged per batch,
so the result does not depend on the batch size.

Conventions (the ones of the S3DIS / ScanNet / SemanticKITTI evaluation scripts):
    - targets equal to ``ignore_index`` (default -1) are dropped before counting;
    - OA (overall accuracy) = trace / total;
    - mAcc = mean over classes *present in the target* of the per-class recall;
    - IoU_c = TP / (TP + FP + FN); a class absent from both prediction and target has no
      IoU (NaN in ``iou``) and is excluded from mIoU. A class predicted but never present
      in the target has IoU 0 and counts in mIoU.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from geo3d.errors import InvalidInputError

__all__ = ["confusion_matrix", "ConfusionMatrix", "metrics_from_confusion"]


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidInputError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return num_classes


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = -1) -> torch.Tensor:
    """Count (target, prediction) pairs.

    Args:
        pred: Predicted class per element, or logits / scores (then ``argmax(-1)`` is used).
        target: True class per element; entries equal to ``ignore_index`` are skipped.
        num_classes: Number of classes C.
        ignore_index: Target value to skip. Default -1.

    Shapes:
        pred: [M] integer or [M, C] floating; target: [M] integer.
        Returns: [C, C] int64, rows = target class, columns = predicted class.

    Raises:
        InvalidInputError: Mismatched lengths, wrong dtypes or widths, or labels outside
            ``0..C-1`` (other than ``ignore_index`` in the target).
    """
    c = _check_num_classes(num_classes)
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise InvalidInputError("pred and target must be torch.Tensors")
    if pred.is_floating_point():
        if pred.dim() != 2 or pred.shape[1] != c:
            raise InvalidInputError(f"pred logits must have shape [M, {c}], got {list(pred.shape)}")
        pred = pred.argmax(-1)
    if pred.dim() != 1 or target.dim() != 1 or pred.shape[0] != target.shape[0]:
        raise InvalidInputError(f"pred and target must be 1-D of equal length, got "
                                f"{list(pred.shape)} and {list(target.shape)}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise InvalidInputError(f"target must be an integer tensor, got {target.dtype}")
    keep = target != ignore_index
    pred, target = pred[keep].long(), target[keep].long()
    for name, t in (("target", target), ("pred", pred)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= c):
            raise InvalidInputError(f"{name} holds labels outside 0..{c - 1} "
                                    f"(min {int(t.min())}, max {int(t.max())})")
    counts = torch.bincount(target * c + pred, minlength=c * c)
    return counts.reshape(c, c).cpu()


def metrics_from_confusion(cm: torch.Tensor,
                           class_names: Optional[Sequence[str]] = None) -> dict:
    """OA, mAcc, per-class IoU and mIoU from a confusion matrix.

    Args:
        cm: Confusion matrix, rows = target, columns = prediction (see module docstring).
        class_names: Names for the ``iou`` / ``acc`` dicts; default ``"0"``, ``"1"``...

    Shapes:
        cm: [C, C] integer.

    Returns:
        ``{"OA", "mAcc", "mIoU": float, "iou": {name: float}, "acc": {name: float},
        "support": {name: int}}``. Values are fractions in [0, 1]; NaN when undefined
        (empty matrix, class absent from prediction and target).
    """
    if not isinstance(cm, torch.Tensor) or cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise InvalidInputError("cm must be a square [C, C] tensor")
    c = cm.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise InvalidInputError(f"class_names must have {c} entries, got {len(names)}")
    cm = cm.double()
    tp = cm.diag()
    support = cm.sum(1)                  # target count per class
    predicted = cm.sum(0)
    union = support + predicted - tp
    total = float(cm.sum())
    nan = float("nan")
    acc = [float(tp[i] / support[i]) if support[i] > 0 else nan for i in range(c)]
    iou = [float(tp[i] / union[i]) if union[i] > 0 else nan for i in range(c)]

    def _mean(values: list[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return sum(kept) / len(kept) if kept else nan

    return {
        "OA": float(tp.sum()) / total if total > 0 else nan,
        "mAcc": _mean(acc),
        "mIoU": _mean(iou),
        "iou": dict(zip(names, iou)),
        "acc": dict(zip(names, acc)),
        "support": {n: int(s) for n, s in zip(names, support.tolist())},
    }


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches (then :meth:`compute` the metrics).

    Args:
        num_classes: Number of classes C.
        ignore_index: Target value to skip. Default -1.
        class_names: Optional names of the classes (C entries).
    """

    def __init__(self, num_classes: int, ignore_index: int = -1,
                 class_names: Optional[Sequence[str]] = None) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = int(ignore_index)
        if class_names is not None and len(class_names) != num_classes:
            raise InvalidInputError(f"class_names must have {num_classes} entries, "
                                    f"got {len(class_names)}")
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` [M] labels or [M, C] logits, ``target`` [M]."""
        self.matrix += confusion_matrix(pred.detach(), target.detach(), self.num_classes,
                                        self.ignore_index)

    def compute(self) -> dict:
        """The metrics of :func:`metrics_from_confusion` on the accumulated matrix."""
        return metrics_from_confusion(self.matrix, self.class_names)
