"""The batches a transform runs on: one input repeated, or an iterable of inputs cycled."""

from __future__ import annotations

import itertools
from typing import Any, Iterable

from torch import Tensor

from geo3d.errors import InvalidInputError


def cycle_batches(data: Any, name: str) -> Iterable:
    """An endless iterator over ``data`` (a Data/Tensor, or an iterable of them).

    Raises:
        InvalidInputError: ``data`` is None, not iterable, or empty (named ``name``).
    """
    if data is None:
        raise InvalidInputError(f"{name} must be an input (a Data) or an iterable of inputs, got None")
    if isinstance(data, Tensor) or hasattr(data, "pos"):
        return itertools.repeat(data)
    try:
        items = list(data)
    except TypeError as exc:
        raise InvalidInputError(f"{name} must be an input (a Data) or an iterable of inputs, got "
                                f"{type(data).__name__}") from exc
    if not items:
        raise InvalidInputError(f"{name} is empty: it needs at least one batch")
    return itertools.cycle(items)
