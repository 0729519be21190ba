"""``ViewSession``: frames, an optional model and its budget -> one :class:`Scene` per frame.

The state behind both ``geo3d view --out`` and the interactive app, without any window:
predictions are computed lazily and cached per (frame, budget); a sequence's frames up
to the current one give the track trails.
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import nn
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.viewers.builders import COLOR_BY, scene_from_data
from geo3d.viewers.inference import Prediction, predict, supports_budget
from geo3d.viewers.scene import Scene

__all__ = ["ViewSession"]


class ViewSession:
    """Frames to show, with a model's predictions when a model is given.

    Args:
        frames: the frames (``Data``), at least one.
        names: class names by label id (default: the simulator's classes).
        model: a model to run on each frame (optional).
        color_by: point colouring (see :func:`geo3d.viewers.points`; default ``"auto"``:
            predicted labels when a model predicts them).
        point_size: in pixels (default 2).
        budget: initial compute budget for models with ``set_budget`` (default: the
            model's own).
        count_macs: count MACs of each model run (default True; once per frame and budget).
    """

    def __init__(self, frames: Sequence[Data], names: Optional[Sequence[str]] = None,
                 model: Optional[nn.Module] = None, color_by: str = "auto",
                 point_size: float = 2.0, budget: Optional[float] = None,
                 count_macs: bool = True) -> None:
        self.frames = list(frames)
        if not self.frames or not all(isinstance(f, Data) for f in self.frames):
            raise InvalidInputError("frames must be a non-empty sequence of Data")
        if color_by not in COLOR_BY:
            raise InvalidInputError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")
        self.names = None if names is None else tuple(names)
        self.model = model.eval() if model is not None else None
        self.color_by = color_by
        self.point_size = point_size
        self.count_macs = count_macs
        self._budget = None
        self._cache: dict = {}
        if budget is not None:
            self.budget = budget

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def has_budget(self) -> bool:
        """Whether the model has a compute budget knob."""
        return self.model is not None and supports_budget(self.model)

    @property
    def budget(self) -> Optional[float]:
        """The budget set through this session (``None``: the model's default)."""
        return self._budget

    @budget.setter
    def budget(self, value: float) -> None:
        if not self.has_budget:
            raise InvalidInputError("the model has no compute budget (no set_budget method)")
        self._budget = float(value)

    def _index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int) or not -len(self) <= i < len(self):
            raise InvalidInputError(f"frame {i!r} is out of range for {len(self)} frames")
        return i % len(self)

    def prediction(self, i: int) -> Optional[Prediction]:
        """The model's prediction on frame ``i`` (``None`` without a model)."""
        i = self._index(i)
        if self.model is None:
            return None
        key = (i, self._budget)
        if key not in self._cache:
            self._cache[key] = predict(self.model, self.frames[i], self._budget, self.count_macs)
        return self._cache[key]

    def scene(self, i: int) -> Scene:
        """The scene of frame ``i``: data, predictions and, in a sequence, track trails."""
        i = self._index(i)
        pred = self.prediction(i)
        history = self.frames[: i + 1] if len(self) > 1 else None
        return scene_from_data(self.frames[i], None if pred is None else pred.data,
                               self.color_by, self.names, history, self.point_size)
