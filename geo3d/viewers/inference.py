"""Run a model on a frame for the viewer: outputs as ``Data``, latency, MACs, budget.

Our own glue (a few lines per output kind). Models are rebuilt from a checkpoint written
by ``geo3d train`` (``geo3d.models.create(state["model_name"], **state["model_kwargs"])``).
Output kinds understood:

* ``[N, C]`` logits for ``N`` points (segmentation): predicted ``y`` and its softmax
  ``score``;
* ``[1, C]`` logits (classification): ``label`` and ``score`` of the sample;
* a ``dict`` or ``Data`` with any of ``boxes``, ``box_labels``, ``box_scores``,
  ``track_id``, ``joints``, ``y`` (detection, tracking, hand pose), or a one-element
  list of those (one per sample). A model with a ``predict(data)`` method is called
  through it (decoded outputs, e.g. boxes after NMS), else ``forward``.

MACs come from ``geo3d.efficiency.count_macs(model, data)`` when that module exists;
otherwise only the latency is measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError

__all__ = ["Prediction", "load_model", "model_input", "predict", "supports_budget", "count_macs"]

_KEYS = ("y", "score", "boxes", "box_labels", "box_scores", "track_id", "joints")


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict` returns.

    Args:
        data: the outputs as ``Data`` (``y``, ``score``, ``boxes``, ``box_labels``,
            ``box_scores``, ``track_id``, ``joints``, ``label`` where present).
        latency_ms: wall time of the model call.
        macs: multiply-accumulates of the call (``None`` when not measured).
    """

    data: Data
    latency_ms: float
    macs: Optional[int] = None


def load_model(checkpoint: Union[str, Path]) -> tuple[nn.Module, dict]:
    """Rebuild the model of a ``geo3d train`` checkpoint, in eval mode; returns
    ``(model, state)`` (:func:`geo3d.tasks.checkpoint.model_from_checkpoint`)."""
    from geo3d.tasks.checkpoint import model_from_checkpoint

    return model_from_checkpoint(checkpoint)


def model_input(model: nn.Module, data: Data) -> Data:
    """A copy of ``data`` with ``x`` cut to the model's ``in_channels`` (``None`` for 0)."""
    need = getattr(model, "in_channels", None)
    out = data.clone()
    if need is None:
        return out
    x = getattr(data, "x", None)
    if need == 0:
        out.x = None
    elif x is None or x.dim() != 2 or x.shape[1] < need:
        have = 0 if x is None else (x.shape[1] if x.dim() == 2 else "?")
        raise InvalidInputError(f"the model needs {need} feature columns in data.x, the data "
                                f"has {have}")
    else:
        out.x = x[:, :need].float()
    return out


def supports_budget(model: nn.Module) -> bool:
    """Whether the model has a compute budget knob ``set_budget(b)``."""
    return callable(getattr(model, "set_budget", None))


def count_macs(model: nn.Module, data: Data) -> Optional[int]:
    """MACs of one call via ``geo3d.efficiency.count_macs``; ``None`` if unavailable."""
    try:
        from geo3d.efficiency import count_macs as counter
    except ImportError:
        return None
    result = counter(model, data)
    if isinstance(result, dict):
        for key in ("total", "macs"):
            if key in result:
                return int(result[key])
        return int(sum(v for v in result.values() if isinstance(v, (int, float))))
    return int(result)


def _to_data(outputs, data: Data, task: str) -> Data:
    n = data.pos.shape[0]
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:  # one result per sample
        outputs = outputs[0]
    if isinstance(outputs, torch.Tensor):
        per_sample = task == "classification" or (n != 1 and outputs.shape[:1] == (1,))
        if outputs.dim() == 2 and per_sample and outputs.shape[0] == 1:
            score, label = outputs.float().softmax(-1).max(-1)
            return Data(label=label, score=score)
        if outputs.dim() == 2 and not per_sample and outputs.shape[0] == n:
            score, y = outputs.float().softmax(-1).max(-1)
            return Data(y=y, score=score)
        raise InvalidInputError(f"cannot show model outputs of shape {tuple(outputs.shape)} "
                                f"for {n} points")
    items = dict(outputs.items()) if isinstance(outputs, (dict, Data)) else None
    if items is None or not any(k in items for k in _KEYS):
        raise InvalidInputError(f"cannot show model outputs of type {type(outputs).__name__}; "
                                f"expected logits or a dict with any of {_KEYS}")
    if "labels" in items and "box_labels" not in items:
        items["box_labels"] = items["labels"]
    if "scores" in items and "box_scores" not in items:
        items["box_scores"] = items["scores"]
    return Data(**{k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                   for k, v in items.items() if k in _KEYS})


@torch.no_grad()
def predict(model: nn.Module, data: Data, budget: Optional[float] = None,
            macs: bool = False) -> Prediction:
    """Run ``model`` on one frame.

    Args:
        model: a registered geo3d model (in eval mode).
        data: the frame (``x`` is cut to the model's ``in_channels``).
        budget: passed to ``model.set_budget`` first when given (models that support it).
        macs: also count MACs (slower; default False).
    """
    if budget is not None:
        if not supports_budget(model):
            raise InvalidInputError(f"{type(model).__name__} has no set_budget(b)")
        model.set_budget(budget)
    model.eval()
    inputs = model_input(model, data)
    call = model.predict if callable(getattr(model, "predict", None)) else model
    start = time.perf_counter()
    outputs = call(inputs)
    latency = 1000.0 * (time.perf_counter() - start)
    count = count_macs(model, inputs) if macs else None
    return Prediction(_to_data(outputs, data, getattr(model, "task", "")), latency, count)
