"""export: torch.export where traceable, ONNX blocks checked in onnxruntime."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geo3d.efficiency import PruneConfig, export_onnx, export_onnx_blocks, export_program, prune
from geo3d.errors import InvalidInputError

from tests.efficiency._models import batch, build


def test_onnx_blocks_of_a_pruned_model_match(tmp_path):
    model = build("dgcnn_seg").eval()
    data = batch(model, n=64)
    pruned = prune(model, PruneConfig(method="structured", amount=0.5), data)
    dense_blocks = export_onnx_blocks(model, data, dynamo=False)
    blocks = export_onnx_blocks(pruned, data, tmp_path, dynamo=False)
    assert [b.name for b in blocks] == [b.name for b in dense_blocks]
    assert sum(b.size_bytes for b in blocks) < sum(b.size_bytes for b in dense_blocks)
    for b in blocks:
        assert (tmp_path / f"{b.name}.onnx").is_file() and b.max_abs_error <= 1e-5 + 1e-4 * b.max_abs_output


def test_onnx_dynamo_exporter_and_dynamic_rows():
    import onnxruntime as ort

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).eval()
    data = export_onnx(mlp, torch.randn(4, 5))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(11, 5)  # another row count than the example
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), mlp(x).detach(), rtol=1e-5, atol=1e-6)


def test_export_program_traceable_or_clear_error():
    class Plain(nn.Module):  # no neighbour search: traceable
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, data):
            return self.lin(data.pos)

    data = batch(None, n=16, graphs=1)
    prog = export_program(Plain(), data)
    assert prog.module()(data.pos, data.x, data.batch).shape == (16, 2)
    with pytest.raises(InvalidInputError, match="no MLP block"):
        export_onnx_blocks(nn.Linear(3, 3), torch.randn(2, 3))
    with pytest.raises(InvalidInputError, match="pos"):
        export_program(Plain(), torch.randn(3, 3))


@pytest.mark.slow
def test_export_program_of_a_searching_model_is_refused():
    data = batch(None, n=16, graphs=1)
    with pytest.raises(InvalidInputError, match="torch.export cannot trace"):
        export_program(build("dgcnn_seg"), data)
