"""profile / count_macs: each MAC kind against hand-computed layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geo3d.efficiency import Profile, count_macs, mac_breakdown, profile
from geo3d.efficiency.profile import tensor_product_macs
from geo3d.errors import InvalidInputError


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))


@pytest.mark.parametrize("n", [1, 17, 300])
def test_linear_macs_by_hand(n):
    kinds = mac_breakdown(_mlp(), torch.randn(n, 3))
    assert kinds["linear"] == n * (3 * 8 + 8 * 4)
    assert count_macs(_mlp(), torch.randn(n, 3)) == n * (3 * 8 + 8 * 4)
    assert kinds["gather_scatter"] == kinds["search"] == kinds["tensor_product"] == 0


def test_gathers_scatters_and_knn_search_by_hand():
    from torch_geometric.utils import scatter

    from geo3d.geometry import knn_graph

    class Msg(nn.Module):
        def forward(self, pos):
            edge_index = knn_graph(pos, 4)
            msg = pos[edge_index[0]] @ torch.ones(3, 5, dtype=pos.dtype)
            return scatter(msg, edge_index[1], 0, dim_size=pos.shape[0], reduce="sum")

    n, k, e = 50, 4, 200
    kinds = mac_breakdown(Msg(), torch.rand(n, 3))
    assert kinds["linear"] == e * 3 * 5
    assert kinds["gather_scatter"] == e * 3 + e * 5
    log_n = math.ceil(math.log2(n))  # 6
    assert kinds["search"] == 3 * (n * log_n + n * log_n + e) == 3 * (300 + 300 + 200)


def test_fps_and_feature_knn_search_by_hand():
    from geo3d.geometry import fps
    from geo3d.models._layers import feature_knn_graph

    class Sample(nn.Module):
        def forward(self, pos):
            return fps(pos, torch.tensor([0] * 60 + [1] * 40), ratio=0.25)

    class Feat(nn.Module):
        def forward(self, x):
            return feature_knn_graph(x, 3, torch.tensor([0] * 20 + [1] * 10))

    # FPS: per item M * N * D: 15 * 60 * 3 + 10 * 40 * 3
    assert mac_breakdown(Sample(), torch.rand(100, 3))["search"] == 15 * 60 * 3 + 10 * 40 * 3
    # brute-force kNN in 16-D: per item N^2 * D; the addmm inside is not counted twice
    kinds = mac_breakdown(Feat(), torch.rand(30, 16))
    assert kinds["search"] == (20 * 20 + 10 * 10) * 16 and kinds["linear"] == 0


def test_tensor_product_by_hand():
    from e3nn import o3

    tp = o3.TensorProduct("2x0e+1x1o", "1x0e+1x1o", "2x0e+1x0e+2x1o",
                          [(0, 0, 0, "uvu", True), (1, 1, 1, "uvu", True), (0, 1, 2, "uvu", True)],
                          shared_weights=False, internal_weights=False)
    # (0e x 0e -> 0e): 2*1 pairs * 1*1*1 + 2 weights * 1; (1o x 1o -> 0e): 1 * 3*3*1 + 1 * 1;
    # (0e x 1o -> 1o): 2 * 1*3*3 + 2 * 3
    per_row = (2 + 2) + (9 + 1) + (18 + 6)
    assert tensor_product_macs(tp, 1) == per_row

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.tp = tp

        def forward(self, x):
            return self.tp(x[:, :5], x[:, 5:9], x[:, 9:9 + tp.weight_numel])

    kinds = mac_breakdown(Wrap(), torch.randn(7, 9 + tp.weight_numel))
    assert kinds["tensor_product"] == 7 * per_row
    assert kinds["linear"] == 0  # e3nn's internal einsums are not counted twice


def test_module_category_scopes_dense_macs():
    class GemConv(nn.Linear):
        mac_category = "gem_kernel"

    model = nn.Sequential(nn.Linear(4, 6), GemConv(6, 2), nn.Linear(2, 3))
    kinds = mac_breakdown(model, torch.randn(10, 4))  # the scoped module's output flows on
    assert kinds["linear"] == 10 * (4 * 6 + 2 * 3) and kinds["gem_kernel"] == 10 * 6 * 2


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_matmul_counts_stored_entries(layout):
    """A sparse [M, N] matrix times a dense [N, K] one: nnz * K MACs, not M * N * K (GEM's
    fused neighbour averaging is such a product)."""
    dense = torch.zeros(50, 40)
    dense[torch.arange(50), torch.arange(50) % 40] = 1.0  # 50 stored entries
    dense[3, 7] = 2.0
    sparse = dense.to_sparse_csr() if layout == "csr" else dense.to_sparse()

    class SparseAverage(nn.Module):
        def forward(self, x):
            return sparse @ x

    class SparseOnTheRight(nn.Module):
        def forward(self, x):
            return x.T @ sparse.t()  # [6, 40] @ [40, 50]: each stored entry meets 6 rows

    x = torch.randn(40, 6)
    kinds = mac_breakdown(SparseAverage(), x)
    assert kinds["linear"] == 51 * 6
    if layout == "coo":  # torch multiplies dense @ sparse for COO only
        assert mac_breakdown(SparseOnTheRight(), x)["linear"] == 51 * 6
    assert count_macs(nn.Linear(6, 3), x) == 40 * 6 * 3  # dense products unchanged


def test_gem_conv_macs_by_hand():
    """One fused GemConv (order 1 -> 1) on the gem_kernel row: the sparse neighbour
    averaging (``E * F`` stored entries per product: one for the order-0 coefficient, two
    for the order-1 pair with ``2 C_in`` columns each), the kernel maps built from the
    bases, and the two products with them."""
    from geo3d.models.gem import GemConv

    torch.manual_seed(0)
    v, e, c_in, c_out = 10, 30, 2, 3
    conv = GemConv(c_in, c_out, 1, 1)
    edge_index = torch.stack([torch.randint(0, v, (e,)), torch.arange(e) % v])
    theta, transport = torch.rand(e) * 6, torch.rand(e) * 6
    b, d_out, d_in, f = conv.basis.shape
    b_self = conv.self_basis.shape[0]
    assert b_self > 1  # a single basis element would make its einsum element-wise

    class OnGraph(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x, edge_index, theta, transport)

    kinds = mac_breakdown(OnGraph(), torch.randn(v, c_in, d_in))
    want = (e * f * c_in + 2 * e * f * 2 * c_in  # sparse [F V, V] @ [V, K]
            + c_out * c_in * b * d_out * d_in * f + c_out * c_in * b_self * d_out * d_in  # kernels
            + v * (c_in * d_in * f) * (c_out * d_out) + v * (c_in * d_in) * (c_out * d_out))
    assert kinds["gem_kernel"] == want and kinds["linear"] == 0


def test_profile_fields_table_and_no_mutation():
    model = _mlp()
    with torch.no_grad():
        model[0].weight[0].zero_()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = profile(model, torch.randn(20, 3), repeats=2, memory=False)
    assert isinstance(p, Profile)
    assert p.params == 3 * 8 + 8 + 8 * 4 + 4
    assert p.nonzero_params == p.params - 3
    assert p.macs == sum(p.macs_breakdown.values()) == 20 * 56
    assert p.latency_ms > 0 and p.peak_memory_mib is None and p.size_bytes > 68 * 4
    table = str(p)
    for word in ("params", "non-zero params", "MACs", "gather_scatter", "latency", "size"):
        assert word in table
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_profile_peak_memory_sees_allocations():
    n = 200_000
    p = profile(_mlp().eval(), torch.randn(n, 3), repeats=1, memory=True)
    assert p.peak_memory_mib is not None and n * 8 * 4 / 2**20 * 0.9 <= p.peak_memory_mib < 200


def test_profile_errors():
    with pytest.raises(InvalidInputError, match="model"):
        profile("nope", torch.randn(2, 3))
    with pytest.raises(InvalidInputError, match="repeats"):
        profile(_mlp(), torch.randn(2, 3), repeats=-1)


def test_warm_up_cut_of_a_mesh_keeps_only_faces_inside_it():
    from torch_geometric.data import Data

    import trimesh

    from geo3d.efficiency.profile import _shrink

    sphere = trimesh.creation.icosphere(subdivisions=2)
    mesh = Data(pos=torch.as_tensor(sphere.vertices, dtype=torch.float32),
                face=torch.as_tensor(sphere.faces.T, dtype=torch.long).contiguous())
    small = _shrink(mesh, 60)
    assert small.pos.shape == (60, 3) and small.face.shape[1] > 0
    assert int(small.face.max()) < 60
    kept = {tuple(f) for f in small.face.T.tolist()}
    assert kept == {tuple(f) for f in mesh.face.T.tolist() if max(f) < 60}
