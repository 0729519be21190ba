"""SemanticKITTI ``.label`` files: one uint32 per point, read and written with numpy.

The format (Behley et al., "SemanticKITTI", ICCV 2019): little-endian uint32 per point,
the lower 16 bits the semantic class id (raw, e.g. 10 car, 40 road), the upper 16 bits the
instance id, 0 meaning "no instance". geo3d marks "no instance" with -1, so instance id 0
is read as -1 and cannot be written.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_index
from geo3d.io._formats import check_readable, check_record_size
from geo3d.io.atomic import atomic_write_bytes

__all__ = ["read_labels", "write_labels"]

PathLike = Union[str, "os.PathLike[str]"]


def read_labels(path: PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a SemanticKITTI ``.label`` file.

    Args:
        path: The ``.label`` file.

    Returns:
        ``(semantic, instance)``: raw semantic class ids (lower 16 bits) and instance ids
        (upper 16 bits, 0 turned into -1).

    Shapes:
        semantic, instance: ``[N]`` long.

    Raises:
        FileFormatError: If the file is missing, empty, or not a whole number of uint32.
    """
    size = check_readable(path)
    check_record_size(path, size, 4, "SemanticKITTI label")
    raw = np.fromfile(path, dtype="<u4").astype(np.int64)
    semantic = torch.from_numpy(raw & 0xFFFF)
    instance = torch.from_numpy(raw >> 16)
    instance[instance == 0] = -1
    return semantic, instance


def write_labels(path: PathLike, semantic: torch.Tensor, instance: Optional[torch.Tensor] = None) -> None:
    """Write a SemanticKITTI ``.label`` file atomically.

    Args:
        path: The ``.label`` file to create or replace.
        semantic: Raw semantic ids in [0, 65535].
        instance: Instance ids in [1, 65535], or -1 for none. Default None: no instances.

    Shapes:
        semantic, instance: ``[N]`` integer.

    Raises:
        InvalidInputError: On bad shapes, dtypes or ids out of range (instance id 0 cannot
            be stored: 0 means "no instance" in the format).
    """
    atomic_write_bytes(path, encode_labels(semantic, instance))



def encode_labels(
    semantic: torch.Tensor,
    instance: Optional[torch.Tensor] = None,
    names: tuple[str, str] = ("semantic", "instance"),
) -> bytes:
    """Validate labels and return the bytes of their ``.label`` file (see :func:`write_labels`).

    ``names`` are the argument names used in error messages.
    """
    sem_name, inst_name = names
    check_index(semantic, sem_name)
    if semantic.numel() == 0:
        raise InvalidInputError(f"{sem_name} is empty: a .label file needs at least one point")
    sem = semantic.detach().cpu().to(torch.int64)
    if int(sem.min()) < 0 or int(sem.max()) > 0xFFFF:
        raise InvalidInputError(f"{sem_name} ids must lie in [0, 65535]")
    inst = torch.zeros_like(sem)
    if instance is not None:
        check_index(instance, inst_name, sem.numel())
        inst = instance.detach().cpu().to(torch.int64).clone()
        if bool((inst == 0).any()):
            raise InvalidInputError(f"{inst_name} id 0 cannot be stored in a .label file (0 means none); use -1")
        if int(inst.min()) < -1 or int(inst.max()) > 0xFFFF:
            raise InvalidInputError(f"{inst_name} ids must be -1 or lie in [1, 65535]")
        inst[inst == -1] = 0
    return (sem | (inst << 16)).numpy().astype("<u4").tobytes()
