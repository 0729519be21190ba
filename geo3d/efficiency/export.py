"""Export: ``torch.export`` of a whole model, and ONNX of its MLP blocks, checked in onnxruntime.

``torch.export`` and ``torch.onnx.export`` (its ``dynamo=True`` exporter, onnxscript) do
the work. A geo3d point-cloud model builds its graph with data-dependent neighbour
searches (scipy kd-trees, ``.item()``), which ``torch.export`` cannot trace: for those
:func:`export_program` raises ``InvalidInputError`` naming the reason, and
:func:`export_onnx_blocks` exports the part that carries the MACs and can be deployed
beside a native neighbour search: every MLP block (see
:func:`geo3d.efficiency.quantize.mlp_blocks`; pruned models export smaller blocks),
BatchNorm folded, with a dynamic row count. Each ONNX file is run in onnxruntime on the
rows the block saw in ``model(example)`` and compared with PyTorch.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

from geo3d.errors import InvalidInputError

__all__ = ["export_program", "export_onnx", "export_onnx_blocks", "OnnxBlock"]


class _Tensors(nn.Module):
    """Tensor-in wrapper: ``torch.export`` takes tensors, not a ``Data``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pos, x, batch):
        from torch_geometric.data import Data

        return self.model(Data(pos=pos, x=x, batch=batch))


def export_program(model: nn.Module, example: Any) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` as a function of ``(pos, x, batch)`` tensors.

    Args:
        model: a geo3d model (eval mode is used; the model is not modified).
        example: a ``Data`` with ``pos`` (and ``x``, ``batch`` where the model needs them).

    Returns:
        The ``ExportedProgram``; call ``.module()(pos, x, batch)``.

    Raises:
        InvalidInputError: the model cannot be traced (e.g. its neighbour search is
            data-dependent); the message names the model and torch's reason.
    """
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be an nn.Module, got {type(model).__name__}")
    pos = getattr(example, "pos", None)
    if not isinstance(pos, torch.Tensor):
        raise InvalidInputError("example must be a Data with pos [N, 3]")
    batch = getattr(example, "batch", None)
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long)
    was = model.training
    model.eval()
    try:
        return torch.export.export(_Tensors(model), (pos, getattr(example, "x", None), batch),
                                   strict=False)
    except Exception as exc:  # noqa: BLE001 - reported with its reason
        raise InvalidInputError(
            f"torch.export cannot trace {type(model).__name__}: its graph comes from a "
            f"data-dependent neighbour search; export its MLP blocks with "
            f"export_onnx_blocks instead ({type(exc).__name__}: {str(exc)[:200]})") from exc
    finally:
        model.train(was)


def export_onnx(module: nn.Module, example: torch.Tensor, path: Optional[Union[str, Path]] = None,
                *, dynamo: bool = True) -> bytes:
    """ONNX of a tensor-to-tensor ``module`` with a dynamic first dimension.

    Args:
        module: e.g. an MLP block (exported in eval mode).
        example: ``[R, C]`` input.
        path: where to write the file atomically (default None: not written).
        dynamo: ``torch.onnx.export(dynamo=True)`` (default) or the TorchScript exporter.

    Returns:
        The serialized ONNX model.
    """
    module = module.eval()
    if dynamo:
        prog = torch.onnx.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("rows", min=2)},),
                                 dynamo=True, verbose=False)
        data = prog.model_proto.SerializeToString()
    else:
        buf = io.BytesIO()
        torch.onnx.export(module, (example,), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "rows"}, "y": {0: "rows"}}, dynamo=False)
        data = buf.getvalue()
    if path is not None:
        from geo3d.io.atomic import atomic_write_bytes

        atomic_write_bytes(Path(path), data)
    return data


@dataclasses.dataclass
class OnnxBlock:
    """One exported block: its name, file (or None), ONNX bytes and the check's error."""

    name: str
    path: Optional[str]
    size_bytes: int
    max_abs_error: float
    max_abs_output: float


def export_onnx_blocks(model: nn.Module, example: Any, directory: Optional[Union[str, Path]] = None,
                       *, rtol: float = 1e-4, atol: float = 1e-5,
                       dynamo: bool = True) -> List[OnnxBlock]:
    """Export every MLP block of ``model`` to ONNX and check it in onnxruntime.

    Args:
        model: a float model (pruned or dense; not modified).
        example: an input of ``model``; each block is checked on the rows it sees.
        directory: where ``<block name>.onnx`` files go (default None: not written).
        rtol, atol: the check passes when ``max |ort - torch| <= atol + rtol * max |torch|``
            (defaults 1e-4, 1e-5).
        dynamo: the exporter (see :func:`export_onnx`).

    Returns:
        One :class:`OnnxBlock` per block.

    Raises:
        InvalidInputError: no MLP block, or a block whose ONNX output differs (named).
    """
    import onnxruntime as ort

    from geo3d.efficiency.quantize import _fold, mlp_blocks

    blocks = mlp_blocks(model)
    if not blocks:
        raise InvalidInputError(f"{type(model).__name__} has no MLP block to export")
    seen: Dict[str, torch.Tensor] = {}
    hooks = [blk.register_forward_pre_hook(
        lambda m, a, name=name: seen.setdefault(name, a[0].detach().clone())) for name, blk in blocks]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    out = []
    for name, blk in blocks:
        if name not in seen or seen[name].shape[0] < 2:
            continue
        x = seen[name]
        folded = _fold(blk)
        path = None if directory is None else str(Path(directory) / f"{name}.onnx")
        data = export_onnx(folded, x, path, dynamo=dynamo)
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            ref = copy.deepcopy(blk).eval()(x).numpy()
        err, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
        if err > atol + rtol * scale:
            raise InvalidInputError(f"ONNX block {name} differs from PyTorch by {err:.3g} "
                                    f"(tolerance {atol + rtol * scale:.3g})")
        out.append(OnnxBlock(name, path, len(data), err, scale))
    return out
