"""Input-hardness routing: a small model answers what it is sure of, a large one the rest.

Our own code (a two-model cascade with selective prediction, as in Geifman & El-Yaniv,
"Selective Classification for Deep Neural Networks", NeurIPS 2017, and Wang et al.,
"IDK Cascades", UAI 2018). The small model runs on the whole batch; a sample whose
prediction is not trusted (:func:`geo3d.efficiency.early_exit.trusted`: max softmax
probability ``>= threshold`` or entropy ``<= threshold``; for segmentation the mean over
the cloud's points) abstains, and only those samples are batched again for the large
model. Coverage is the fraction of samples the small model answers.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.efficiency.early_exit import confidence, entropy
from geo3d.models._layers import check_model_input
from geo3d.tasks.evaluate import check_model

__all__ = ["Router", "select_samples"]


def select_samples(pos: Tensor, x, batch: Tensor, keep: Tensor) -> Data:
    """The samples ``keep`` ([num_graphs] bool) of a batch, renumbered ``0..K-1``.

    Shapes:
        ``pos [N, 3], x [N, F] | None, batch [N] -> Data(pos [N', 3], x, batch [N'])``.
    """
    mask = keep[batch]
    new_id = torch.cumsum(keep.long(), 0) - 1
    out = Data(pos=pos[mask], x=None if x is None else x[mask], batch=new_id[batch[mask]])
    out.num_graphs = int(keep.sum())
    return out


class Router(nn.Module):
    """Small model first; samples it is unsure of go to the large model.

    Args:
        small, large: geo3d models of the same task (classification or segmentation) and
            input width ``in_channels``; a model without that attribute gets ``data.x`` as
            given (deep-copied: the inputs are left untouched).
        criterion: ``"confidence"`` (default) or ``"entropy"``.
        threshold: trust threshold (default 0.9).

    Attributes:
        counts: ``[2]`` long: samples answered by the small and by the large model since
            :meth:`reset_stats` (eval mode).

    Shapes:
        those of the models (logits ``[num_graphs, C]`` or ``[N, C]``).
    """

    def __init__(self, small: nn.Module, large: nn.Module, criterion: str = "confidence",
                 threshold: float = 0.9) -> None:
        super().__init__()
        tasks = [check_model(m) for m in (small, large)]
        if tasks[0] != tasks[1] or tasks[0] not in ("classification", "segmentation"):
            raise InvalidInputError(f"small and large must both be classification or both "
                                    f"segmentation models, got {tasks[0]!r} and {tasks[1]!r}")
        widths = [getattr(m, "in_channels", None) for m in (small, large)]
        if None not in widths and widths[0] != widths[1]:
            raise InvalidInputError(f"small and large must read the same in_channels, got {widths}")
        if criterion not in ("confidence", "entropy"):
            raise InvalidInputError(f"criterion must be 'confidence' or 'entropy', got {criterion!r}")
        self.small, self.large = copy.deepcopy(small), copy.deepcopy(large)
        self.task = tasks[0]
        self.in_channels = widths[0] if widths[0] is not None else widths[1]  # None: data.x as given
        self.criterion, self.threshold = criterion, float(threshold)
        self.register_buffer("counts", torch.zeros(2, dtype=torch.long), persistent=False)

    def reset_stats(self) -> None:
        self.counts.zero_()

    def coverage(self) -> float:
        """Fraction of the samples counted that the small model answered."""
        total = int(self.counts.sum())
        return int(self.counts[0]) / total if total else 0.0

    def _trusted(self, logits: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        score = confidence(logits) if self.criterion == "confidence" else entropy(logits)
        if self.task == "segmentation":  # mean over each cloud's points
            total = score.new_zeros(num_graphs).index_add_(0, batch, score)
            score = total / torch.bincount(batch, minlength=num_graphs).clamp_min(1)
        return score >= self.threshold if self.criterion == "confidence" else score <= self.threshold

    def forward(self, data: object) -> Tensor:
        dtype = next(self.small.parameters()).dtype
        width = self.in_channels
        if width is None:
            x = getattr(data, "x", None)
            width = 0 if x is None else x.shape[-1]
        pos, x, batch, num_graphs = check_model_input(data, width, dtype)
        full = Data(pos=pos, x=x, batch=batch)
        full.num_graphs = num_graphs
        logits = self.small(full)
        if self.training:
            return logits
        hard = ~self._trusted(logits, batch, num_graphs)
        n_hard = int(hard.sum())
        self.counts += torch.tensor([num_graphs - n_hard, n_hard])
        if n_hard == 0:
            return logits
        out = logits.clone()
        rows = hard if self.task == "classification" else hard[batch]
        out[rows] = self.large(select_samples(pos, x, batch, hard)).to(out.dtype)
        return out

    def loss(self, outputs: Tensor, data: object) -> Tensor:
        """The small model's loss (the task loss) on ``outputs``."""
        return self.small.loss(outputs, data)
