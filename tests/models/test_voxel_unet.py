"""voxel_unet_seg: coarsening, grid alignment across levels, batch independence, training."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from geo3d.errors import InvalidInputError
from geo3d.models import create
from geo3d.models.voxels import coarsen, neighbour_table, voxelize


def _model(dtype=torch.float64, **kwargs):
    torch.manual_seed(0)
    args = dict(in_channels=1, num_classes=3, width=4, depth=2, voxel_size=0.25, head_channels=(8,))
    model = create("voxel_unet_seg", **{**args, **kwargs})
    for m in model.modules():  # non-trivial normalisation statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.to(dtype).eval()


def _cloud(n: int, seed: int, spread: float = 3.0) -> Data:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64) * spread
    return Data(pos=pos, x=torch.rand(n, 1, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("items", [1, 3])
def test_coarsen_equals_voxelizing_at_twice_the_edge(items):
    """Parents of 0.25 m voxels are the 0.5 m voxels (negative cells and batch items too),
    and each voxel's parent holds its points."""
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(4000, 3, generator=g, dtype=torch.float64) * 2
    batch = torch.sort(torch.randint(0, items, (4000,), generator=g)).values
    fine = voxelize(pos, None, batch, 0.25)
    coarse_keys, parent = coarsen(fine.keys)
    coarse = voxelize(pos, None, batch, 0.5)
    assert torch.equal(coarse_keys, coarse.keys)
    assert torch.equal(parent.index_select(0, fine.inverse), coarse.inverse)
    assert bool((pos < 0).any())


def test_logits_are_invariant_to_shifts_by_the_coarsest_cell():
    """Shifting the cloud by whole coarsest voxels (0.25 m * 2^2 = 1 m) moves every level's
    grid by whole cells, so the logits cannot change; half of it regroups the voxels."""
    model = _model()
    data = _cloud(600, 0)
    with torch.no_grad():
        ref = model(data)
        shifted = model(Data(pos=data.pos + torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64), x=data.x))
        half = model(Data(pos=data.pos + 0.5, x=data.x))
    torch.testing.assert_close(shifted, ref, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(half, ref, atol=1e-6)


def test_batch_items_do_not_see_each_other():
    """Two overlapping clouds in one batch give the logits each gives alone."""
    model = _model()
    a, b = _cloud(500, 1), _cloud(300, 2)
    with torch.no_grad():
        both = model(Batch.from_data_list([a, b]))
        torch.testing.assert_close(both[:500], model(a), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(both[500:], model(b), rtol=1e-12, atol=1e-12)


def test_context_reaches_beyond_the_first_level():
    """A point 2 m away changes a point's logits (depth 2 at 0.25 m: coarsest convolution
    spans 3 m) but one 40 m away does not."""
    model = _model()
    data = _cloud(400, 3, spread=0.5)
    probe = data.pos[:1]

    def logits_with(extra: torch.Tensor) -> torch.Tensor:
        pos = torch.cat([data.pos, extra])
        x = torch.cat([data.x, torch.ones(len(extra), 1, dtype=torch.float64)])
        with torch.no_grad():
            return model(Data(pos=pos, x=x))[0]

    base = logits_with(torch.empty(0, 3, dtype=torch.float64))
    assert not torch.allclose(logits_with(probe + torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)), base)
    torch.testing.assert_close(logits_with(probe + 40.0), base, rtol=1e-12, atol=1e-12)


def test_training_separates_classes_by_context():
    """Labels set by which side of a wall a point lies on (not by the point itself) are
    learnt within a few dozen steps, with the Lovász term on."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    pos = torch.rand(800, 3, generator=g) * torch.tensor([8.0, 4.0, 1.0])
    y = (pos[:, 0] > 4.0).long() + 2 * (pos[:, 2] > 0.5).long()
    data = Data(pos=pos, y=y)
    model = create("voxel_unet_seg", num_classes=4, width=8, depth=2, voxel_size=0.25,
                   lovasz_weight=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = model.loss(model(data), data)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(data).argmax(1) == y).float().mean()
    assert acc > 0.9


@pytest.mark.parametrize("bad", [dict(depth=0), dict(width=0), dict(blocks=0), dict(voxel_size=-1.0),
                                 dict(lovasz_weight=-1.0), dict(head_channels=(0,))])
def test_bad_arguments_raise(bad):
    with pytest.raises(InvalidInputError):
        create("voxel_unet_seg", num_classes=3, **bad)


_BAD_INPUTS = {
    "missing pos": Data(x=torch.zeros(4, 1, dtype=torch.float64)),
    "empty cloud": Data(pos=torch.zeros(0, 3, dtype=torch.float64), x=torch.zeros(0, 1, dtype=torch.float64)),
    "NaN": Data(pos=torch.tensor([[0.0, 0.0, float("nan")]] * 4, dtype=torch.float64),
                x=torch.zeros(4, 1, dtype=torch.float64)),
    "Inf": Data(pos=torch.tensor([[float("inf"), 0.0, 0.0]] * 4, dtype=torch.float64),
                x=torch.zeros(4, 1, dtype=torch.float64)),
    "wrong shape": Data(pos=torch.zeros(4, 2, dtype=torch.float64), x=torch.zeros(4, 1, dtype=torch.float64)),
    "wrong dtype": Data(pos=torch.zeros(4, 3, dtype=torch.float32), x=torch.zeros(4, 1, dtype=torch.float32)),
    "wrong x width": Data(pos=torch.zeros(4, 3, dtype=torch.float64), x=torch.zeros(4, 5, dtype=torch.float64)),
    "beyond the key range": Data(pos=torch.full((4, 3), 1e7, dtype=torch.float64),
                                 x=torch.zeros(4, 1, dtype=torch.float64)),
}


@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_bad_input_raises_a_geo3d_error(case):
    with pytest.raises(InvalidInputError):
        _model()(_BAD_INPUTS[case])


@pytest.mark.parametrize("keys", [torch.zeros(3), torch.zeros(2, 3, dtype=torch.long), [1, 2, 3]])
def test_key_ops_reject_what_voxelize_does_not_make(keys):
    for op in (coarsen, neighbour_table):
        with pytest.raises(InvalidInputError, match="int64"):
            op(keys)
