"""One schema for every benchmark's results, and the Pareto front of accuracy against cost.

Each script in ``benchmarks/`` puts a ``"results"`` list in its JSON: one
:class:`ResultRow` (as a dict) per model variant it measured. The suite gathers them into
``results.json``. Written here: the schema is geo3d's own.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from geo3d.errors import FileFormatError, InvalidInputError

__all__ = ["ResultRow", "load_rows", "pareto_front"]


@dataclass(frozen=True)
class ResultRow:
    """One measured model variant.

    Attributes:
        benchmark: The script that measured it, e.g. "segmentation".
        task: What was solved, e.g. "lidar segmentation".
        model: Registry name or method, e.g. "pointnet2_seg".
        variant: "dense", "int8", "pruned 50%"... Default "dense".
        metric: Name of the headline accuracy figure, e.g. "mIoU".
        value: Its value (fractions as fractions: 0.671, not 67.1).
        higher_is_better: Whether a larger ``value`` is better. Default True.
        params, macs, latency_ms, peak_memory_mib, size_bytes: Cost; None when not measured.
        metrics: Other figures (name -> number).
        notes: Free text (budget, data size...).
    """

    benchmark: str
    task: str
    model: str
    metric: str
    value: float
    variant: str = "dense"
    higher_is_better: bool = True
    params: Optional[int] = None
    macs: Optional[float] = None
    latency_ms: Optional[float] = None
    peak_memory_mib: Optional[float] = None
    size_bytes: Optional[int] = None
    metrics: dict = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        for name in ("benchmark", "task", "model", "metric", "variant"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise InvalidInputError(f"ResultRow.{name} must be a non-empty string, "
                                        f"got {getattr(self, name)!r}")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool):
            raise InvalidInputError(f"ResultRow.value must be a number, got {self.value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_rows(result: dict, source: str = "result") -> list[ResultRow]:
    """The :class:`ResultRow` list in a benchmark script's JSON (its ``"results"`` key).

    Raises:
        FileFormatError: If ``"results"`` is missing, not a list, or a row is malformed.
    """
    rows = result.get("results") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise FileFormatError(f"{source}: no 'results' list (one row per model variant)")
    names = {f.name for f in dataclasses.fields(ResultRow)}
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not set(row) <= names:
            extra = sorted(set(row) - names) if isinstance(row, dict) else type(row).__name__
            raise FileFormatError(f"{source}: results[{i}] is not a result row ({extra})")
        try:
            out.append(ResultRow(**row))
        except (TypeError, InvalidInputError) as exc:
            raise FileFormatError(f"{source}: results[{i}]: {exc}") from None
    return out


def pareto_front(costs: Sequence[float], values: Sequence[float],
                 higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and value.

    A point is on the front if no other point has cost <= and value better-or-equal with
    at least one strictly better. NaN or None points are never on the front.

    Returns:
        The indices on the front, sorted by cost.
    """
    if len(costs) != len(values):
        raise InvalidInputError(f"costs and values differ in length ({len(costs)} vs {len(values)})")
    sign = 1.0 if higher_is_better else -1.0
    points = [(float(c), sign * float(v), i) for i, (c, v) in enumerate(zip(costs, values))
              if c is not None and v is not None and not math.isnan(float(c))
              and not math.isnan(float(v))]
    points.sort(key=lambda p: (p[0], -p[1]))
    front, best = [], -math.inf
    for cost, value, index in points:
        if value > best:
            front.append(index)
            best = value
    return front
