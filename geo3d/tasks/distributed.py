"""Distributed data parallel (DDP) set-up for :func:`geo3d.tasks.train`, via torch.distributed.

Launch any geo3d training under ``torchrun`` and it runs data-parallel, one process per
device: ``torchrun --standalone --nproc_per_node 2 -m geo3d.cli train ...``. The backend
is gloo on CPU and NCCL on CUDA. torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`init_distributed` joins the process group when they are present (or uses one the
caller initialised). Only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from geo3d.errors import InvalidInputError

__all__ = ["DistInfo", "init_distributed", "is_main_process", "resolve_device",
           "broadcast_buffers", "all_reduce"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on
    its host, and whether it joined the group itself (``owns_group``: then it leaves it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files and shows progress."""
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group if this process created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA (``cuda:local_rank``) when available, else CPU.

    Raises:
        InvalidInputError: ``"cuda"`` asked for but not available.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInputError(f"device {device!r} asked for, but CUDA is not available")
        return torch.device(device if ":" in device else f"cuda:{local_rank}")
    return torch.device(device)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one (no-op for a single process).

    Args:
        device: The device setting; NCCL is used for CUDA, gloo otherwise.

    Returns:
        The :class:`DistInfo` of this process.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", 0)), owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device, local_rank).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=True)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of an initialised process group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``t`` over all ranks with ``op`` ("sum" or "max"); a new tensor (a copy for
    one process)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return t.clone()
    out = t.to("cuda", copy=True) if dist.get_backend() == "nccl" else t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return out.to(t.device)
