import pytest
import torch
from torch_geometric.nn import global_max_pool, global_mean_pool

from geo3d.models._layers import global_pool


def _reference(x, batch, n, mode):
    out = global_max_pool(x, batch, size=n)
    return torch.cat([out, global_mean_pool(x, batch, size=n)], 1) if mode == "max_mean" else out


@pytest.mark.parametrize("mode", ["max", "max_mean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_global_pool_matches_pyg(mode, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 12, generator=g, dtype=dtype)[:, 2:]  # a non-contiguous slice too
    sorted_batch = torch.tensor([0] * 7 + [1] * 20 + [2] * 13)
    for batch, n in ((sorted_batch, 3),  # fast path: sorted, no empty graph
                     (sorted_batch[torch.randperm(40, generator=g)], 3),  # unsorted
                     (torch.tensor([0] * 20 + [2] * 20), 3)):  # graph 1 empty
        got = global_pool(x, batch, n, mode)
        torch.testing.assert_close(got, _reference(x, batch, n, mode))


def test_global_pool_gradient_reaches_the_maxima():
    x = torch.tensor([[1.0, 5.0], [3.0, 2.0], [0.0, 4.0]], requires_grad=True)
    global_pool(x, torch.tensor([0, 0, 1]), 2, "max").sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
