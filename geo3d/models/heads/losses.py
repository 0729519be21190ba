"""Losses of the heads: (class-weighted) cross-entropy and the Lovász-softmax loss.

Cross-entropy is ``torch.nn.functional.cross_entropy``. The Lovász-softmax loss is our own
~20 lines of torch (no maintained package provides it; the authors' reference code is a
script, not a library): Berman, Rannen Triki & Blaschko, "The Lovász-Softmax loss: A
tractable surrogate for the optimization of the intersection-over-union measure in
neural networks", CVPR 2018. It is what LiDAR segmentation models (e.g. RangeNet++,
SalsaNext, Cylinder3D) add to the cross-entropy to lift the IoU of rare classes.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from geo3d.errors import InvalidInputError

__all__ = ["cross_entropy", "lovasz_softmax", "segmentation_loss", "check_class_weights",
           "check_loss_weight", "frequency_class_weights"]


def check_labels(logits: Tensor, y: object) -> Tensor:
    """``y`` as a ``[rows]`` long tensor of class indices (or -1) matching ``logits``."""
    if not isinstance(y, Tensor):
        raise InvalidInputError(f"data.y must be a tensor of class indices, got {type(y).__name__}")
    y = y.reshape(-1) if y.dim() == 2 and y.shape[1] == 1 else y
    if y.dim() != 1 or y.shape[0] != logits.shape[0]:
        raise InvalidInputError(
            f"data.y must have shape [{logits.shape[0]}] (one label per logits row), "
            f"got {list(y.shape)}"
        )
    if y.is_floating_point() or y.dtype == torch.bool:
        raise InvalidInputError(f"data.y must be an integer tensor, got {y.dtype}")
    y = y.long()
    if y.numel() and (int(y.min()) < -1 or int(y.max()) >= logits.shape[1]):
        raise InvalidInputError(
            f"data.y must hold class indices in [0, {logits.shape[1]}) or -1, "
            f"got range [{int(y.min())}, {int(y.max())}]"
        )
    return y


def cross_entropy(logits: Tensor, y: object, weight: Optional[Tensor] = None) -> Tensor:
    """Mean cross-entropy over labels ``!= -1``; 0 (with a graph) when all are ignored.

    Args:
        logits: ``[R, C]`` scores.
        y: ``[R]`` (or ``[R, 1]``) class indices, -1 ignored.
        weight: optional ``[C]`` class weights; the mean is then weighted
            (``sum_i w[y_i] * ce_i / sum_i w[y_i]``, as ``torch.nn.functional.cross_entropy``).
    """
    y = check_labels(logits, y)
    if not bool((y >= 0).any()):
        return logits.sum() * 0.0
    if weight is not None:
        weight = weight.to(logits.dtype)
    return F.cross_entropy(logits, y, weight=weight, ignore_index=-1)


def lovasz_softmax(logits: Tensor, y: object) -> Tensor:
    """Lovász-softmax loss: the mean over present classes of the Lovász extension of the
    Jaccard loss ``1 - IoU_c``, evaluated at the errors ``|[y == c] - p_c|``.

    ``p = softmax(logits)``. Classes are "present" when at least one row has that label
    (the paper's ``classes="present"``); rows labelled -1 are ignored. On one-hot ``p`` the
    loss equals ``mean_c (1 - IoU_c)`` of the hard prediction exactly (the Lovász
    extension agrees with the set function on binary vectors).

    Args:
        logits: ``[R, C]`` scores (all rows of a batch together).
        y: ``[R]`` class indices, -1 ignored.

    Returns:
        A scalar; 0 (with a graph) when every label is -1.
    """
    y = check_labels(logits, y)
    keep = y >= 0
    if not bool(keep.any()):
        return logits.sum() * 0.0
    probs, y = logits[keep].softmax(dim=1), y[keep]
    present = torch.bincount(y, minlength=logits.shape[1]) > 0
    fg = F.one_hot(y, logits.shape[1]).to(probs.dtype)[:, present]  # [R, P]
    errors = (fg - probs[:, present]).abs()
    errors, order = errors.sort(dim=0, descending=True)
    fg = fg.gather(0, order)
    total = fg.sum(dim=0)
    intersection = total - fg.cumsum(dim=0)
    union = total + (1.0 - fg).cumsum(dim=0)
    jaccard = 1.0 - intersection / union  # loss of the first i errors, i = 1..R
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
    return (errors * grad).sum(dim=0).mean()


def segmentation_loss(logits: Tensor, data: object, class_weights: Optional[Tensor] = None,
                      lovasz_weight: float = 0.0) -> Tensor:
    """Cross-entropy (weighted by ``class_weights``) against ``data.y`` ([N] long, -1
    ignored), plus ``lovasz_weight`` times the Lovász-softmax loss."""
    y = getattr(data, "y", None)
    loss = cross_entropy(logits, y, class_weights)
    if lovasz_weight:
        loss = loss + lovasz_weight * lovasz_softmax(logits, y)
    return loss


def check_class_weights(value: object, num_classes: int) -> Optional[Tensor]:
    """``None``, or ``num_classes`` finite positive numbers as a float32 tensor."""
    if value is None:
        return None
    try:
        w = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    except (TypeError, ValueError, RuntimeError):
        raise InvalidInputError(f"class_weights must be a sequence of {num_classes} positive "
                                f"numbers or None, got {value!r}") from None
    if w.shape != (num_classes,) or not bool(torch.isfinite(w).all()) or not bool((w > 0).all()):
        raise InvalidInputError(f"class_weights must be {num_classes} finite positive numbers "
                                f"(one per class), got {value!r}")
    return w.float()


def check_loss_weight(value: object, name: str) -> float:
    """A finite number ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)



def frequency_class_weights(labels, num_classes: int) -> list[float]:
    """Inverse square-root class frequencies of training labels, mean 1 over the classes.

    A class absent from ``labels`` gets the largest weight (that of the rarest class seen).
    Pass the result as ``class_weights`` to ``pointnet2_seg`` or ``dgcnn_seg``.

    Args:
        labels: an iterable of label tensors (e.g. ``data.y`` of each training sample);
            entries outside ``0..num_classes-1`` (ignored labels) are skipped.
        num_classes: number of classes C.

    Raises:
        InvalidInputError: no valid label at all.
    """
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for y in labels:
        y = torch.as_tensor(y).reshape(-1).long()
        y = y[(y >= 0) & (y < num_classes)]
        counts += torch.bincount(y, minlength=num_classes).double()
    if counts.sum() == 0:
        raise InvalidInputError("frequency_class_weights: no label in 0..num_classes-1")
    freq = counts / counts.sum()
    w = 1.0 / freq.clamp_min(freq[freq > 0].min()).sqrt()
    return [float(v) for v in w / w.mean()]
