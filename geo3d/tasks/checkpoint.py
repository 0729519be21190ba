"""Training checkpoints: ``torch.save`` into memory, then an atomic write to disk.

The bytes go through :func:`geo3d.io.atomic_write_bytes` (temporary file + ``os.replace``),
so a crash while writing leaves the previous checkpoint intact. Checkpoints hold only
tensors and plain Python values and are read back with ``torch.load(weights_only=True)``:
loading one never runs pickled code.

Contents (a dict): ``format`` (version), ``model`` (state_dict), ``optimizer``,
``scheduler``, ``epoch`` (finished epochs), ``batch_in_epoch`` (batches done in the
current epoch, for a mid-epoch stop), ``step`` (optimizer steps), ``rng`` (torch, CUDA,
numpy and ``random`` states), ``config`` (``TrainConfig.to_dict()``), ``model_name`` /
``model_kwargs`` (to rebuild the model with ``geo3d.models.create``), ``class_names``,
``num_classes``, ``metadata`` (free-form, e.g. the data set-up), ``task``, ``best``
(best validation metrics so far) and ``history``.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "model_from_checkpoint", "get_rng_state",
           "set_rng_state", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = 1


def get_rng_state() -> dict:
    """The states of torch (CPU and CUDA), numpy and ``random``, as tensors and ints."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "random": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore the states captured by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    r = state["random"]
    random.setstate((r[0], tuple(r[1]), r[2]))


def save_checkpoint(path: Union[str, Path], state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (the folder is created if missing).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileFormatError: Missing, empty, truncated or corrupt file, or not a geo3d
            checkpoint (the message names the path).
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise FileFormatError(f"checkpoint {str(path)!r} is empty")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError...
        raise FileFormatError(f"checkpoint {str(path)!r} is corrupt or truncated: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                              ) from exc
    if not isinstance(state, dict) or "model" not in state or "format" not in state:
        raise FileFormatError(f"{str(path)!r} is not a geo3d checkpoint (no 'model'/'format')")
    if state["format"] != CHECKPOINT_FORMAT:
        raise FileFormatError(f"checkpoint {str(path)!r} has format {state['format']}, "
                              f"this geo3d reads format {CHECKPOINT_FORMAT}")
    return state


def model_from_checkpoint(path: Union[str, Path], task: Optional[str] = None):
    """Rebuild the model of a ``geo3d train`` checkpoint, in eval mode.

    Args:
        path: A checkpoint written by :func:`geo3d.tasks.train`.
        task: When given, the model's ``task`` must be this (e.g. "detection").

    Returns:
        ``(model, state)``: the model with the checkpoint's weights, and the checkpoint.

    Raises:
        FileFormatError: As :func:`load_checkpoint`.
        InvalidInputError: No model name in the checkpoint, a model of another task, or
            weights that do not fit the model (the message names the path).
    """
    from geo3d import models

    state = load_checkpoint(path)
    name = state.get("model_name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"checkpoint {str(path)!r} has no model name: it was not "
                                f"written by geo3d train, so the model cannot be rebuilt")
    model = models.create(name, **state.get("model_kwargs", {}))
    if task is not None and getattr(model, "task", None) != task:
        raise InvalidInputError(f"checkpoint {str(path)!r} holds {name}, a "
                                f"{getattr(model, 'task', '?')} model, not a {task} model")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise InvalidInputError(f"checkpoint {str(path)!r} does not fit model {name!r}: "
                                f"{str(exc).splitlines()[0]}") from None
    return model.eval(), state
