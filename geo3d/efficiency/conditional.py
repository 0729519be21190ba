"""``conditional``: models that spend less compute where they can, and a budget controller.

Three forms of conditional compute, each a model-to-model transform (the input model is
deep-copied, never modified):

* ``method="budget"``: a slimmable DGCNN / PointNet++ (:mod:`geo3d.efficiency.slimmable`),
  ``model.set_budget(b)`` for ``b`` in ``[0.25, 1]``, trained with the sandwich rule by
  :func:`geo3d.tasks.train` as it is. :class:`BudgetController` picks ``b`` per frame of a
  stream from measured latency and, optionally, the vehicle's speed.
* ``method="early_exit"``: intermediate classifiers after each message-passing layer; a
  sample leaves at the first whose confidence (or entropy) passes the threshold
  (:mod:`geo3d.efficiency.early_exit`).
* ``method="routing"``: the model abstains on uncertain inputs and hands them to a larger
  model (``large=``; :mod:`geo3d.efficiency.routing`).

Our own code: no library does conditional compute on message-passing models.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

from torch import nn

from geo3d.errors import InvalidInputError
from geo3d.efficiency.slimmable import check_budgets, make_slimmable

__all__ = ["ConditionalConfig", "conditional", "BudgetController"]

_METHODS = ("budget", "early_exit", "routing")
_CRITERIA = ("confidence", "entropy")


def _number(name: str, value: object, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
            or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number in [{low}, {high}], got {value!r}")


@dataclasses.dataclass(frozen=True)
class ConditionalConfig:
    """Which conditional-compute transform, and its settings.

    Args:
        method: ``"budget"`` (default), ``"early_exit"`` or ``"routing"``.
        budgets: ``budget``: the training grid, each budget with its own BatchNorm
            statistics; ``set_budget`` accepts any value between its ends (default
            ``(0.25, 0.5, 0.75, 1.0)``).
        sandwich_samples: ``budget``: random budgets between the ends per training step
            (default 2).
        inplace_distillation: ``budget``: smaller budgets learn the largest one's soft
            predictions (default True) instead of the labels.
        temperature: distillation temperature (default 1).
        criterion: ``early_exit``/``routing``: ``"confidence"`` (max softmax probability,
            default) or ``"entropy"`` (of the softmax, in nats).
        threshold: a prediction is trusted when its confidence is ``>= threshold`` (or
            its entropy ``<= threshold``). Default 0.9.
        exit_hidden: ``early_exit``: hidden width of each exit head (default 64).
        freeze_backbone: ``early_exit``: train only the exit heads (default True); the
            final output is then exactly the input model's.
    """

    method: str = "budget"
    budgets: Tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    sandwich_samples: int = 2
    inplace_distillation: bool = True
    temperature: float = 1.0
    criterion: str = "confidence"
    threshold: float = 0.9
    exit_hidden: int = 64
    freeze_backbone: bool = True

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise InvalidInputError(f"method must be one of {_METHODS}, got {self.method!r}")
        object.__setattr__(self, "budgets", check_budgets(self.budgets))
        if self.criterion not in _CRITERIA:
            raise InvalidInputError(f"criterion must be one of {_CRITERIA}, got {self.criterion!r}")
        for name, low in (("sandwich_samples", 0), ("exit_hidden", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InvalidInputError(f"{name} must be an integer >= {low}, got {v!r}")
        for name in ("inplace_distillation", "freeze_backbone"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _number("temperature", self.temperature, 1e-6)
        _number("threshold", self.threshold, 0.0, 1.0 if self.criterion == "confidence" else math.inf)


def conditional(model: nn.Module, config: ConditionalConfig, large: Optional[nn.Module] = None
                ) -> nn.Module:
    """A conditional-compute copy of ``model`` (``model`` and ``large`` are left untouched).

    Args:
        model: ``budget``: a DGCNN / PointNet++ classifier or segmenter; ``early_exit``: a
            DGCNN / PointNet++ classifier; ``routing``: any classification or segmentation
            model (the small one).
        config: a :class:`ConditionalConfig`.
        large: ``routing`` only: the model uncertain inputs go to.

    Returns:
        ``budget``: a :class:`~geo3d.efficiency.slimmable.SlimmableModel`;
        ``early_exit``: an :class:`~geo3d.efficiency.early_exit.EarlyExitModel` (train its
        exit heads with :func:`geo3d.tasks.train`); ``routing``: a
        :class:`~geo3d.efficiency.routing.Router`.

    Raises:
        InvalidInputError: a model the method cannot handle (e.g. equivariant, GEM), a
            bad config, ``large`` missing for routing or given otherwise.
    """
    if not isinstance(config, ConditionalConfig):
        raise InvalidInputError(f"config must be a ConditionalConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be an nn.Module, got {type(model).__name__}")
    if (large is not None) != (config.method == "routing"):
        raise InvalidInputError("large must be given for method='routing' and only then")
    if config.method == "budget":
        return make_slimmable(model, config.budgets, config.sandwich_samples,
                              config.inplace_distillation, config.temperature)
    if config.method == "early_exit":
        from geo3d.efficiency.early_exit import make_early_exit

        return make_early_exit(model, criterion=config.criterion, threshold=config.threshold,
                               hidden=config.exit_hidden, freeze_backbone=config.freeze_backbone)
    from geo3d.efficiency.routing import Router

    return Router(model, large, criterion=config.criterion, threshold=config.threshold)


class BudgetController:
    """Picks the width budget of each frame of a stream from a latency target.

    Latency is modelled as ``ms_per_cost * cost(b)``: ``cost`` is the relative cost of each
    budget (e.g. MACs at ``b`` over MACs at 1, from
    :func:`geo3d.efficiency.count_macs`); ``ms_per_cost`` is an exponential moving average
    of the measured ``latency / cost(b)`` of past frames. Each frame gets the largest
    budget whose predicted latency is at most ``safety * target``, the smallest one if none
    is (the first frame, with nothing measured, gets the smallest).

    The target tightens with speed: the scene must not move more than ``max_travel_m``
    while a frame is processed, so ``target = min(latency_target_ms, 1000 * max_travel_m /
    speed)``; e.g. 0.5 m at 20 m/s (72 km/h) allows 25 ms.

    Args:
        latency_target_ms: the target at standstill (> 0).
        budgets: the budgets to choose from (default ``(0.25, 0.5, 0.75, 1.0)``).
        relative_cost: ``{budget: cost}`` with cost > 0 (default ``b ** 2``: width
            slimming of MLPs, where MACs fall with the square of the width).
        max_travel_m: metres the scene may move during one frame's processing; None
            (default): speed does not change the target.
        smoothing: EMA weight of the newest measurement in ``(0, 1]`` (default 0.5).
        safety: fraction of the target planned for, in ``(0, 1]`` (default 0.9).
        clock: seconds, monotonic (default ``time.perf_counter``; tests pass a fake one).

    Usage::

        ctrl = BudgetController(100.0, model.budgets, max_travel_m=0.5)
        for frame, speed in stream:
            logits, budget, ms = ctrl.step(model, frame, speed_mps=speed)
    """

    def __init__(self, latency_target_ms: float, budgets: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
                 relative_cost: Optional[Dict[float, float]] = None,
                 max_travel_m: Optional[float] = None, smoothing: float = 0.5, safety: float = 0.9,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        _number("latency_target_ms", latency_target_ms, 1e-9)
        self.budgets = check_budgets(budgets)
        costs = relative_cost if relative_cost is not None else {b: b * b for b in self.budgets}
        if not isinstance(costs, dict) or any(b not in costs for b in self.budgets):
            raise InvalidInputError(f"relative_cost must map every budget {self.budgets} to a "
                                    f"cost, got {relative_cost!r}")
        for b in self.budgets:
            _number(f"relative_cost[{b}]", costs[b], 1e-12)
        if max_travel_m is not None:
            _number("max_travel_m", max_travel_m, 1e-9)
        _number("smoothing", smoothing, 1e-9, 1.0)
        _number("safety", safety, 1e-9, 1.0)
        if not callable(clock):
            raise InvalidInputError(f"clock must be callable, got {clock!r}")
        self.latency_target_ms = float(latency_target_ms)
        self.cost = {b: float(costs[b]) for b in self.budgets}
        self.max_travel_m, self.smoothing, self.safety, self.clock = max_travel_m, smoothing, safety, clock
        self.ms_per_cost: Optional[float] = None
        self.history: list = []  # (budget, measured ms, target ms) per frame

    def target_ms(self, speed_mps: float = 0.0) -> float:
        """The latency target at ``speed_mps`` (metres per second, >= 0)."""
        _number("speed_mps", speed_mps, 0.0)
        if self.max_travel_m is None or speed_mps == 0:
            return self.latency_target_ms
        return min(self.latency_target_ms, 1000.0 * self.max_travel_m / speed_mps)

    def predict_ms(self, budget: float) -> Optional[float]:
        """Predicted latency at ``budget`` (None before the first measurement)."""
        return None if self.ms_per_cost is None else self.ms_per_cost * self.cost[budget]

    def select(self, speed_mps: float = 0.0) -> float:
        """The budget for the next frame."""
        limit = self.safety * self.target_ms(speed_mps)
        fits = [b for b in self.budgets if self.ms_per_cost is not None and self.predict_ms(b) <= limit]
        return fits[-1] if fits else self.budgets[0]

    def update(self, budget: float, measured_ms: float) -> None:
        """Add one frame's measured latency at ``budget``."""
        if budget not in self.cost:
            raise InvalidInputError(f"budget must be one of {self.budgets}, got {budget!r}")
        _number("measured_ms", measured_ms, 0.0)
        rate = measured_ms / self.cost[budget]
        a = self.smoothing
        self.ms_per_cost = rate if self.ms_per_cost is None else a * rate + (1 - a) * self.ms_per_cost

    def step(self, model: nn.Module, frame: object, speed_mps: float = 0.0):
        """Select a budget, run ``model(frame)`` at it and time it.

        Args:
            model: has ``set_budget(b)`` (a :class:`~geo3d.efficiency.slimmable.SlimmableModel`).
            frame: the model's input.
            speed_mps: current speed in metres per second (default 0).

        Returns:
            ``(outputs, budget, measured_ms)``.
        """
        if not callable(getattr(model, "set_budget", None)):
            raise InvalidInputError("model must have set_budget(b): make it with "
                                    "conditional(model, ConditionalConfig(method='budget'))")
        target = self.target_ms(speed_mps)
        budget = self.select(speed_mps)
        model.set_budget(budget)
        start = self.clock()
        out = model(frame)
        ms = 1000.0 * (self.clock() - start)
        self.update(budget, ms)
        self.history.append((budget, ms, target))
        return out, budget, ms
