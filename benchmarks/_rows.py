"""Shared pieces of the benchmark scripts' ``result_rows`` (suite rows, issue 9).

Each script turns the JSON it writes into :class:`geo3d.bench.results.ResultRow` dicts
with a small pure ``result_rows(result)``; this module holds what they share: the cost
fields of a :func:`_measure.measure` dict and a row builder. Written here: the row
schema is geo3d's own (:mod:`geo3d.bench.results`).
"""

from __future__ import annotations

import math
from typing import Any, Optional

__all__ = ["cost_fields", "make_row"]

_COST_KEYS = ("params", "macs", "latency_ms", "peak_memory_mib", "size_bytes")


def cost_fields(cost: Optional[dict]) -> dict:
    """The :class:`ResultRow` cost fields (params, macs, latency_ms, peak_memory_mib,
    size_bytes) present in a ``_measure.measure`` dict; missing ones are left out."""
    return {k: cost[k] for k in _COST_KEYS if cost and cost.get(k) is not None}


def make_row(benchmark: str, task: str, model: str, metric: str, value: Any, **fields) -> dict:
    """One validated :class:`ResultRow` as a dict (``value`` None becomes NaN).

    ``metrics`` keeps only its numeric entries (bool and None dropped), as floats.
    """
    from geo3d.bench.results import ResultRow

    metrics = {k: float(v) for k, v in (fields.pop("metrics", None) or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    value = math.nan if value is None else float(value)
    return ResultRow(benchmark=benchmark, task=task, model=model, metric=metric, value=value,
                     metrics=metrics, **fields).to_dict()
