"""The model registry: named factory functions that build every geo3d model.

Written here (a dict and two functions) rather than borrowed from timm's registry so the
error messages follow geo3d's conventions and nothing global besides the name table exists.

Usage::

    @register("dgcnn_seg")
    def dgcnn_seg(*, in_channels: int = 0, num_classes: int, k: int = 20) -> nn.Module: ...

    model = create("dgcnn_seg", num_classes=8)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from torch import nn

from geo3d.errors import InvalidInputError

__all__ = ["register", "create", "list_models"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register(name: str) -> Callable[[F], F]:
    """Register a model factory function under ``name``.

    Args:
        name: Registry name, e.g. ``"dgcnn_seg"``; must be a non-empty string not
            registered yet.

    Returns:
        A decorator that records the factory and returns it unchanged.

    Raises:
        InvalidInputError: If ``name`` is empty, not a string, or already registered.
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"name must be a non-empty string, got {name!r}")

    def decorator(factory: F) -> F:
        if name in _REGISTRY:
            raise InvalidInputError(
                f"name {name!r} is already registered (by {_REGISTRY[name].__module__}."
                f"{_REGISTRY[name].__qualname__})"
            )
        if not callable(factory):
            raise InvalidInputError(f"factory for {name!r} must be callable, got {factory!r}")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_models() -> list[str]:
    """Return the sorted names of every registered model."""
    return sorted(_REGISTRY)


def _check_kwargs(name: str, factory: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    sig = inspect.signature(factory)
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = None
    else:
        accepted = {
            n
            for n, p in params.items()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        }
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise InvalidInputError(
                f"model {name!r} got unknown keyword argument(s) {unknown}; "
                f"it accepts {sorted(accepted)}"
            )
    missing = sorted(
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and n not in kwargs
    )
    if missing:
        raise InvalidInputError(f"model {name!r} is missing required keyword argument(s) {missing}")


def create(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` from keyword arguments.

    Args:
        name: A name from :func:`list_models`.
        pretrained: Load the weights shipped in the model zoo (default False); see
            :func:`geo3d.models.list_pretrained`. The model is built with the zoo entry's
            keyword arguments; ``kwargs`` may repeat them but not change them.
        **kwargs: Keyword arguments of the model's factory function.

    Returns:
        The model, an ``nn.Module`` with attributes ``task`` and ``loss``.

    Raises:
        InvalidInputError: Unknown ``name`` (the message lists the known ones), unknown or
            missing keyword arguments (named), bad values (raised by the factory), or
            ``pretrained=True`` for a model without shipped weights or with kwargs that
            differ from the shipped ones.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InvalidInputError(f"unknown model name {name!r}; known models: {list_models()}")
    if not isinstance(pretrained, bool):
        raise InvalidInputError(f"pretrained must be a bool, got {pretrained!r}")
    factory = _REGISTRY[name]
    state = None
    if pretrained:
        from geo3d.models.pretrained import load_pretrained_state, pretrained_entry

        shipped = pretrained_entry(name)["model_kwargs"]
        changed = sorted(k for k in kwargs if k not in shipped or kwargs[k] != shipped[k])
        if changed:
            raise InvalidInputError(f"pretrained {name} was trained with {shipped}; "
                                    f"{changed} cannot differ")
        kwargs = dict(shipped)
        state = load_pretrained_state(name)
    _check_kwargs(name, factory, kwargs)
    try:
        model = factory(**kwargs)
    except InvalidInputError:
        raise
    except TypeError as exc:  # e.g. positional-only misuse or bad value types
        raise InvalidInputError(f"model {name!r}: bad keyword arguments {sorted(kwargs)}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"factory of model {name!r} returned {type(model).__name__}, not nn.Module")
    if state is not None:
        model.load_state_dict(state)
        model.eval()
    return model
