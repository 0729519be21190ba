"""Small registered models and inputs for the efficiency tests (as tests/models builds them)."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data

from geo3d.models import create

NUM_CLASSES = 3
IN_CHANNELS = 2
SMALL = {
    "dgcnn_cls": dict(width=8, depth=2, emb_channels=16, k=8, head_channels=(16,)),
    "dgcnn_seg": dict(width=8, depth=2, emb_channels=16, k=8, head_channels=(16,)),
    "pointnet2_cls": dict(width=8, radii=(0.4, 0.8), max_neighbors=16, head_channels=(16,)),
    "pointnet2_seg": dict(width=8, ratios=(0.25, 0.25), radii=(0.4, 0.8), max_neighbors=16,
                          head_channels=(16,)),
    "equivariant_cls": dict(lmax=1, width=4, depth=2, radius=0.8, num_basis=4, radial_hidden=8,
                            head_hidden=8),
    "equivariant_seg": dict(lmax=1, width=4, depth=2, radius=0.8, num_basis=4, radial_hidden=8,
                            head_hidden=8),
}


def cloud(n: int, seed: int, dtype=torch.float32, in_channels: int = IN_CHANNELS) -> Data:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64).to(dtype)
    x = torch.randn(n, in_channels, generator=g, dtype=torch.float64).to(dtype) if in_channels else None
    return Data(pos=pos, x=x, y=torch.randint(0, NUM_CLASSES, (n,), generator=g))


def build(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {**SMALL.get(name, {}), **overrides}
    return create(name, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES, **kwargs)


def batch(model, n: int = 128, graphs: int = 2, seed: int = 0) -> Batch:
    b = Batch.from_data_list([cloud(n, seed + i) for i in range(graphs)])
    if getattr(model, "task", None) == "classification":
        b.y = torch.arange(graphs) % NUM_CLASSES
    return b


def snapshot(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        assert after[k].shape == v.shape and torch.equal(after[k], v), k
