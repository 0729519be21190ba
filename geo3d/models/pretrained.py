"""The model zoo: small trained checkpoints shipped inside the package, loaded offline.

``geo3d/models/zoo/zoo.json`` lists each checkpoint: the registry name, the keyword
arguments that rebuild the model, the file (a ``state_dict``), its SHA-256, the command that
trained it, and the metrics it reached on a fixed synthetic test split (``evaluation``:
the arguments of :func:`geo3d.datasets.by_name.make_dataset`). The regression tests
re-evaluate every entry and fail if a metric falls more than ``tolerance`` below the
recorded figure.

``create(name, pretrained=True)`` (in :mod:`geo3d.models.registry`) uses
:func:`pretrained_entry` and :func:`load_pretrained_state`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from geo3d.errors import FileFormatError, InvalidInputError

__all__ = ["list_pretrained", "pretrained_entry", "load_pretrained_state", "save_pretrained",
           "ZOO_DIR"]

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
_MANIFEST = "zoo.json"


def _manifest(zoo_dir: Path) -> dict:
    path = zoo_dir / _MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{path}: unreadable model-zoo manifest ({exc})") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{path}: the model-zoo manifest must be a JSON object")
    return data


def list_pretrained(zoo_dir: Optional[Path] = None) -> list[str]:
    """Names of the models with shipped weights (``create(name, pretrained=True)`` works)."""
    return sorted(_manifest(Path(zoo_dir or ZOO_DIR)))


def pretrained_entry(name: str, zoo_dir: Optional[Path] = None) -> dict:
    """The manifest entry of ``name``: ``model_kwargs``, ``file``, ``sha256``, ``metrics``...

    Raises:
        InvalidInputError: No shipped weights for ``name`` (the message lists those there are).
    """
    entries = _manifest(Path(zoo_dir or ZOO_DIR))
    if name not in entries:
        raise InvalidInputError(f"no pretrained weights for {name}; shipped: {sorted(entries)}")
    return dict(entries[name])


def load_pretrained_state(name: str, zoo_dir: Optional[Path] = None) -> dict:
    """The ``state_dict`` of ``name``, checked against its recorded SHA-256.

    Raises:
        FileFormatError: Missing, truncated or altered checkpoint file.
    """
    zoo = Path(zoo_dir or ZOO_DIR)
    entry = pretrained_entry(name, zoo)
    path = zoo / entry["file"]
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read the pretrained weights of {name} ({exc})") from None
    if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
        raise FileFormatError(f"{path}: SHA-256 differs from the manifest: the file is "
                              f"truncated or altered")
    import io
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def save_pretrained(name: str, model: nn.Module, model_kwargs: dict, metrics: dict,
                    evaluation: dict, command: str, tolerance: float = 0.01,
                    zoo_dir: Optional[Path] = None, **extra: Any) -> Path:
    """Add (or replace) ``name`` in the zoo: write its weights and manifest entry atomically.

    Args:
        name: Registry name of the model.
        model: The trained model (its ``state_dict`` is saved, float32).
        model_kwargs: Keyword arguments that rebuild it with ``create(name, **model_kwargs)``.
        metrics: The figures reached on ``evaluation`` (name -> float), as
            :func:`geo3d.tasks.evaluate` reports them.
        evaluation: Arguments of :func:`geo3d.datasets.by_name.make_dataset` (``name``,
            ``split``, ``size``, ``seed``, ``num_points``...) for the regression test.
        command: The command that trained it.
        tolerance: Allowed drop of each metric in the regression tests. Default 0.01.
        zoo_dir: The zoo folder. Default: the package's.
        **extra: More JSON-able fields for the entry (e.g. ``batch_size``).

    Returns:
        The path of the weights file.
    """
    from geo3d.io.atomic import atomic_write_bytes
    import io

    zoo = Path(zoo_dir or ZOO_DIR)
    zoo.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
             for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = buffer.getvalue()
    path = zoo / f"{name}.pt"
    atomic_write_bytes(path, blob)
    entries = _manifest(zoo)
    entries[name] = {"file": path.name, "sha256": hashlib.sha256(blob).hexdigest(),
                     "model_kwargs": dict(model_kwargs), "metrics": dict(metrics),
                     "evaluation": dict(evaluation), "command": command,
                     "tolerance": float(tolerance), **extra}
    atomic_write_bytes(zoo / _MANIFEST, json.dumps(entries, indent=2, sort_keys=True).encode())
    return path
