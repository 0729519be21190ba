"""DGCNN: EdgeConv against a dense reference, the dynamic graph, the feature-space kNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from torch_geometric.data import Data

from geo3d.geometry import knn_graph
from geo3d.models import create
from geo3d.models._layers import feature_knn_graph
from geo3d.models.backbones.dgcnn import EdgeConv


def _randomise_bn(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edgeconv_matches_dense_reference(dtype):
    torch.manual_seed(0)
    conv = EdgeConv(2, (4, 3)).to(dtype).eval()
    _randomise_bn(conv)
    x = torch.randn(5, 2, dtype=dtype)
    # node i's neighbours: a hand-made graph, 2 per node (row 0 neighbour j, row 1 centre i)
    nbrs = {0: [0, 3], 1: [4, 2], 2: [2, 0], 3: [1, 1], 4: [3, 0]}
    edge_index = torch.tensor([[j for i in range(5) for j in nbrs[i]], [i for i in range(5) for _ in nbrs[i]]])
    with torch.no_grad():
        ref = torch.stack([
            torch.stack([
                conv.post(torch.nn.functional.linear(torch.cat([x[i], x[j] - x[i]])[None], conv.first.weight))[0]
                for j in nbrs[i]
            ]).amax(0)
            for i in range(5)
        ])  # fmt: skip
        dense = conv(x, edge_index, k=2)  # reshape-max path
        scatter = conv(x, edge_index)  # PyG scatter-max path
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dense, ref, **tol)
    torch.testing.assert_close(scatter, ref, **tol)


def test_dynamic_graph_is_recomputed_in_feature_space():
    torch.manual_seed(0)
    model = create("dgcnn_seg", num_classes=3, width=16, depth=3, emb_channels=16, k=6).eval()
    pos = torch.randn(120, 3)
    batch = torch.zeros(120, dtype=torch.long)
    with torch.no_grad():
        _, _, graphs = model.backbone(pos, None, batch, 1, return_graphs=True)
        h1 = model.backbone.convs[0](pos, graphs[0], k=6)
    assert len(graphs) == 3
    # layer 1: kNN of xyz (self included), exactly geo3d.geometry.knn_graph
    assert torch.equal(graphs[0], knn_graph(pos, 6, loop=True))
    # layer 2: kNN of layer 1's output, a different graph
    d = torch.cdist(h1.double(), h1.double())
    ref = d.topk(6, dim=1, largest=False).indices
    assert torch.equal(graphs[1][0].view(120, 6).sort(1).values, ref.sort(1).values)
    assert not torch.equal(graphs[1], graphs[0])
    assert not torch.equal(graphs[2], graphs[1])


@pytest.mark.parametrize("dim,threads,block", [(3, 1, 256), (16, 1, 256), (16, 2, 16), (16, 2, 7)])
def test_feature_knn_graph_matches_scipy(dim, threads, block, monkeypatch):
    """Wide features: brute force in blocks of query rows, split over threads."""
    import geo3d.models._layers as layers

    monkeypatch.setattr(layers, "_BLOCK_ROWS", block)
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(300, dim, generator=g)
    batch = torch.cat([torch.zeros(180, dtype=torch.long), torch.ones(120, dtype=torch.long)])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        ei = feature_knn_graph(x, 7, batch)
    finally:
        torch.set_num_threads(before)
    assert ei.shape == (2, 300 * 7)
    assert torch.equal(ei[1], torch.arange(300).repeat_interleave(7))
    for s, e in ((0, 180), (180, 300)):
        _, ref = cKDTree(x[s:e].double().numpy()).query(x[s:e].double().numpy(), k=7)
        got = ei[0].view(300, 7)[s:e] - s
        assert np.array_equal(np.sort(got.numpy(), 1), np.sort(ref, 1))
        # neighbours come by increasing distance (the documented layout)
        xb = x[s:e].double()
        dist = (xb[got] - xb[:, None]).norm(dim=2)
        assert bool((dist[:, 1:] >= dist[:, :-1] - 1e-6).all())


def test_small_item_gets_all_points_and_is_independent():
    model = create("dgcnn_cls", num_classes=2, width=8, depth=2, emb_channels=8, k=20).eval()
    torch.manual_seed(1)
    small = torch.randn(5, 3)  # fewer points than k: irregular graph, scatter path
    with torch.no_grad():
        out = model(Data(pos=small))
        perm = model(Data(pos=small[torch.tensor([3, 1, 4, 0, 2])]))
    assert out.shape == (1, 2) and torch.isfinite(out).all()
    torch.testing.assert_close(out, perm)  # pooled output is permutation invariant
