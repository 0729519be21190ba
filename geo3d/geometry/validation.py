"""Input checks shared by the public entry points.

Each check raises :class:`geo3d.errors.InvalidInputError` naming the argument and the
fault, so that bad input never turns into a crash or a silently wrong answer.
"""

from __future__ import annotations

from typing import Optional

import torch

from geo3d.errors import InvalidInputError

__all__ = ["check_points", "check_batch", "check_finite", "check_positive", "check_index"]


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise if a floating tensor holds NaN or Inf."""
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).sum()) if t.dim() else 1
        raise InvalidInputError(f"{name} contains NaN or Inf values ({bad} rows affected)")


def check_points(
    t: object,
    name: str,
    dim: Optional[int] = 3,
    allow_empty: bool = True,
    finite: bool = True,
) -> torch.Tensor:
    """Check that ``t`` is a floating ``[N, dim]`` tensor (``dim=None``: any width).

    Returns the tensor unchanged, so a call can be used inline.
    """
    if not isinstance(t, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2 or (dim is not None and t.shape[1] != dim):
        want = f"[N, {dim}]" if dim is not None else "[N, F]"
        raise InvalidInputError(f"{name} must have shape {want}, got {list(t.shape)}")
    if not t.is_floating_point():
        raise InvalidInputError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if not allow_empty and t.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty (0 points)")
    if finite:
        check_finite(t, name)
    return t


def check_index(t: object, name: str, length: Optional[int] = None) -> torch.Tensor:
    """Check that ``t`` is a 1-D integer tensor (of ``length`` entries if given)."""
    if not isinstance(t, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 1:
        raise InvalidInputError(f"{name} must be 1-D, got shape {list(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InvalidInputError(f"{name} must be an integer tensor, got {t.dtype}")
    if length is not None and t.shape[0] != length:
        raise InvalidInputError(f"{name} must have {length} entries, got {t.shape[0]}")
    return t


def check_batch(batch: Optional[torch.Tensor], num_points: int, name: str = "batch") -> None:
    """Check a batch vector: 1-D integer, one entry per point, non-negative and sorted."""
    if batch is None:
        return
    check_index(batch, name, num_points)
    if num_points == 0:
        return
    if bool((batch < 0).any()):
        raise InvalidInputError(f"{name} must be non-negative")
    if num_points > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise InvalidInputError(f"{name} must be sorted in ascending order")


def check_positive(value: float, name: str, allow_zero: bool = False) -> None:
    """Check that a scalar is finite and positive (or non-negative)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not ok or v != v or v in (float("inf"), float("-inf")):
        kind = "non-negative" if allow_zero else "positive"
        raise InvalidInputError(f"{name} must be a finite {kind} number, got {value!r}")
