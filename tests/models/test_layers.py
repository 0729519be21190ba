import numpy as np
import pytest
import torch
from torch_geometric.nn import global_max_pool, global_mean_pool

from geo3d._threads import for_row_ranges
from geo3d.models._layers import _k_smallest, global_pool


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


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_k_smallest_matches_a_sort(threads, dtype):
    """Row-parallel selection: the k smallest per row, ascending (distinct values: the
    same indices as a sort; rounded values with ties: the same values)."""
    g = torch.Generator().manual_seed(1)
    distinct = torch.rand(257, 300, generator=g, dtype=dtype)
    tied = (distinct * 20).round()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got, got_tied = _k_smallest(distinct, 7), _k_smallest(tied, 7)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got, torch.sort(distinct, dim=1).indices[:, :7])
    assert torch.equal(tied.gather(1, got_tied), torch.sort(tied, dim=1).values[:, :7])
    assert (got_tied.sort(dim=1).values.diff(dim=1) > 0).all()  # no column twice


def test_row_ranges_cover_every_row_once_and_raise_errors():
    seen = np.zeros(1000, dtype=np.int64)

    def mark(a, b):
        seen[a:b] += 1

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for_row_ranges(mark, 1000, 10)
        assert (seen == 1).all()

        def fail(a, b):
            raise ValueError(f"rows {a}:{b}")

        with pytest.raises(ValueError, match="rows"):
            for_row_ranges(fail, 1000, 10)
    finally:
        torch.set_num_threads(before)


def test_nested_row_ranges_run_serially_instead_of_deadlocking():
    out = np.zeros((400, 400), dtype=np.int64)

    def inner_rows(i):
        def fill(a, b):
            out[i, a:b] += 1
        return fill

    def outer(a, b):
        for i in range(a, b):
            for_row_ranges(inner_rows(i), 400, 10)  # called from a pool thread

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for_row_ranges(outer, 400, 10)
    finally:
        torch.set_num_threads(before)
    assert (out == 1).all()


def test_item_knn_falls_back_to_topk_when_k_covers_the_item():
    from geo3d.models._layers import _item_knn

    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, 12, generator=g)
    got = _item_knn(x, 30)  # k == n: every point, by increasing distance
    d = torch.cdist(x, x)
    assert torch.equal(got.sort(dim=1).values, torch.arange(30).expand(30, 30))
    assert (d.gather(1, got).diff(dim=1) >= -1e-5).all()
