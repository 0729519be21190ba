"""GEM-CNN: kernel constraint, gauge equivariance of every layer and of the whole model,
rigid-motion invariance, the two convolution paths, coarsening, shapes, gradients, errors."""

from __future__ import annotations

import math
from typing import List

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation
from torch import Tensor
from torch_geometric.data import Batch, Data

import geo3d.geometry.mesh as mesh_ops
from geo3d.errors import InvalidInputError
from geo3d.models import create
from geo3d.models.gem import (GemConv, ParallelTransportPool, ParallelTransportUnpool,
                              RegularBatchNorm, RegularNonlinearity, apply_rho, coarsen,
                              fourier_kernel_basis, harmonics, kernel_basis, rho,
                              self_interaction_basis)

ORDERS = [(0, 0), (0, 2), (2, 0), (1, 1), (2, 2), (1, 3)]
SMALL = dict(width=4, depth=1, order=2, levels=2, head_channels=(8,))


def _mesh(dtype=torch.float64, subdivisions=2, seed=0) -> Data:
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    rng = np.random.default_rng(seed)
    v = m.vertices * (1 + 0.3 * rng.random((len(m.vertices), 1)))
    pos = torch.tensor(v, dtype=dtype)
    face = torch.tensor(m.faces.T.copy())
    return Data(pos=pos, face=face, x=mesh_ops.curvature_features(pos, face),
                y=torch.tensor(rng.integers(0, 3, len(v))))


def _random_graph(v=40, e=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, v, (2, e), generator=g)
    theta = torch.rand(e, generator=g, dtype=torch.float64) * 2 * math.pi - math.pi
    transport = torch.rand(e, generator=g, dtype=torch.float64) * 2 * math.pi
    gamma = torch.rand(v, generator=g, dtype=torch.float64) * 2 * math.pi
    return edge_index, theta, transport, gamma


def _regauge(edge_index, theta, transport, gamma):
    """Angles after rotating every vertex's gauge by ``gamma``."""
    q, p = edge_index
    return theta - gamma[p], transport - gamma[p] + gamma[q]


@pytest.mark.parametrize("order_in,order_out", ORDERS)
def test_kernel_basis_solves_the_constraint(order_in, order_out):
    g = torch.Generator().manual_seed(1)
    theta = torch.rand(16, generator=g, dtype=torch.float64) * 10 - 5
    shift = torch.rand(16, generator=g, dtype=torch.float64) * 10 - 5
    k = kernel_basis(theta, order_in, order_out)
    lhs = kernel_basis(theta - shift, order_in, order_out)
    rhs = rho(-shift, order_out)[:, None] @ k @ rho(shift, order_in)[:, None]
    torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=0)
    n_zero = (order_in == 0) + (order_out == 0)
    expected = 1 + 2 * (order_in + order_out) + 4 * order_in * order_out
    assert k.shape[1] == expected, n_zero
    # the Fourier form used by GemConv is exact
    four = torch.einsum("bdef,tf->tbde", fourier_kernel_basis(order_in, order_out),
                        harmonics(theta, order_in + order_out))
    torch.testing.assert_close(four, k, atol=1e-12, rtol=0)
    # self-interaction: angle-free solutions
    s = self_interaction_basis(order_in, order_out)
    torch.testing.assert_close(rho(-shift, order_out)[:, None] @ s @ rho(shift, order_in)[:, None],
                               s.expand(16, *s.shape), atol=1e-12, rtol=0)
    # the basis is linearly independent
    flat = k.permute(1, 0, 2, 3).reshape(k.shape[1], -1)
    assert int(torch.linalg.matrix_rank(flat)) == k.shape[1]


def test_apply_rho_matches_the_matrices():
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    a = torch.randn(7, dtype=torch.float64)
    torch.testing.assert_close(apply_rho(x, a, 2), torch.einsum("eij,ecj->eci", rho(a, 2), x))


@pytest.mark.parametrize("order_in,order_out", [(0, 2), (2, 2), (2, 0), (1, 3)])
def test_gem_conv_is_gauge_equivariant_and_both_paths_agree(order_in, order_out):
    torch.manual_seed(0)
    edge_index, theta, transport, gamma = _random_graph()
    conv = GemConv(3, 2, order_in, order_out).double()
    x = torch.randn(40, 3, 2 * order_in + 1, dtype=torch.float64)
    out = conv(x, edge_index, theta, transport)
    theta2, transport2 = _regauge(edge_index, theta, transport, gamma)
    out2 = conv(apply_rho(x, -gamma, order_in), edge_index, theta2, transport2)
    torch.testing.assert_close(out2, apply_rho(out, -gamma, order_out), atol=1e-12, rtol=0)
    with torch.no_grad():  # the inference path: one GEMM per harmonic, no concatenation
        fast = conv(x, edge_index, theta, transport)
        fast2 = conv(apply_rho(x, -gamma, order_in), edge_index, theta2, transport2)
    torch.testing.assert_close(fast, out.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(fast2, apply_rho(fast, -gamma, order_out), atol=1e-12, rtol=0)
    conv.fused = False  # PyG MessagePassing path (unsorted edges too)
    torch.testing.assert_close(conv(x, edge_index, theta, transport), out, atol=1e-12, rtol=0)


def test_weighted_gem_conv_is_equivariant_paths_agree_and_uniform_weights_give_the_mean():
    torch.manual_seed(0)
    edge_index, theta, transport, gamma = _random_graph()
    weight = mesh_ops.angular_weights(theta, edge_index, 40)
    conv = GemConv(3, 2, 1, 2).double()
    x = torch.randn(40, 3, 3, dtype=torch.float64)
    out = conv(x, edge_index, theta, transport, weight)
    theta2, transport2 = _regauge(edge_index, theta, transport, gamma)
    weight2 = mesh_ops.angular_weights(theta2, edge_index, 40)
    torch.testing.assert_close(weight2, weight, atol=1e-12, rtol=0)
    out2 = conv(apply_rho(x, -gamma, 1), edge_index, theta2, transport2, weight2)
    torch.testing.assert_close(out2, apply_rho(out, -gamma, 2), atol=1e-12, rtol=0)
    conv.fused = False
    torch.testing.assert_close(conv(x, edge_index, theta, transport, weight), out, atol=1e-12, rtol=0)
    deg = torch.bincount(edge_index[1], minlength=40).double()
    conv.fused = True
    torch.testing.assert_close(conv(x, edge_index, theta, transport, 1 / deg[edge_index[1]]),
                               conv(x, edge_index, theta, transport), atol=1e-12, rtol=0)
    assert not torch.allclose(out, conv(x, edge_index, theta, transport))


def test_regular_nonlinearity_is_equivariant():
    torch.manual_seed(0)
    gamma = torch.rand(50, dtype=torch.float64) * 2 * math.pi
    x = torch.randn(50, 4, 5, dtype=torch.float64)  # unit variance, as after the batch norm
    nl = RegularNonlinearity(2).double()
    err = (nl(apply_rho(x, -gamma, 2)) - apply_rho(nl(x), -gamma, 2)).abs().max()
    assert float(err) < 1e-6
    coarse = RegularNonlinearity(2, num_samples=16).double()  # too few samples: visible error
    assert float((coarse(apply_rho(x, -gamma, 2)) - apply_rho(coarse(x), -gamma, 2)).abs().max()) > 1e-4
    relu = RegularNonlinearity(2, num_samples=16, act="relu").double()  # exact on the grid
    grid = torch.randint(0, 16, (50,)).double() * (2 * math.pi / 16)
    torch.testing.assert_close(relu(apply_rho(x, -grid, 2)), apply_rho(relu(x), -grid, 2))
    assert float((relu(x) - nl(x)).abs().max()) > 0.01  # the activation matters
    with pytest.raises(InvalidInputError, match="num_samples"):
        RegularNonlinearity(2, num_samples=3)
    with pytest.raises(InvalidInputError, match="act"):
        RegularNonlinearity(2, act="softsign")


def test_regular_batch_norm_is_equivariant_and_normalises():
    torch.manual_seed(0)
    gamma = torch.rand(64, dtype=torch.float64) * 2 * math.pi
    x = 5 + 3 * torch.randn(64, 4, 5, dtype=torch.float64)
    bn = RegularBatchNorm(4, 2).double().train()
    y = bn(x)
    torch.testing.assert_close(bn(apply_rho(x, -gamma, 2)), apply_rho(y, -gamma, 2))
    var = (y[..., 0] - y[..., 0].mean(0)).pow(2).mean(0) + 0.5 * y[..., 1:].pow(2).sum(-1).mean(0)
    torch.testing.assert_close(var, torch.ones(4, dtype=torch.float64), atol=1e-4, rtol=0)
    bn.eval()
    torch.testing.assert_close(bn(apply_rho(x, -gamma, 2)), apply_rho(bn(x), -gamma, 2))


def test_pool_and_unpool_are_equivariant():
    torch.manual_seed(0)
    cluster = torch.tensor([0, 0, 1, 1, 1, 2])
    keep = torch.tensor([0, 3, 5])
    angle = torch.rand(6, dtype=torch.float64) * 6
    gamma = torch.rand(6, dtype=torch.float64) * 6
    x = torch.randn(6, 2, 5, dtype=torch.float64)
    pool, unpool = ParallelTransportPool(2), ParallelTransportUnpool(2)
    angle2 = angle - gamma[keep][cluster] + gamma  # transport from fine to coarse, regauged
    out = pool(x, cluster, angle, 3)
    torch.testing.assert_close(pool(apply_rho(x, -gamma, 2), cluster, angle2, 3),
                               apply_rho(out, -gamma[keep], 2))
    torch.testing.assert_close(unpool(apply_rho(out, -gamma[keep], 2), cluster, angle2),
                               apply_rho(unpool(out, cluster, angle), -gamma, 2))


def test_coarsening_is_a_maximal_independent_set_and_batch_independent():
    a, b = _mesh(), _mesh(subdivisions=1, seed=2)
    batch = Batch.from_data_list([a, b])
    edges = mesh_ops.mesh_edges(batch.face, batch.num_nodes)
    c = coarsen(edges, batch.batch)
    kept = torch.zeros(batch.num_nodes, dtype=torch.bool)
    kept[c.keep] = True
    assert not bool((kept[edges[0]] & kept[edges[1]]).any())  # independent
    owner = c.keep[c.cluster]
    pairs = set(zip(edges[0].tolist(), edges[1].tolist()))
    assert all(o == v or (o, v) in pairs for v, o in enumerate(owner.tolist()))  # adjacent owner
    alone = coarsen(mesh_ops.mesh_edges(a.face, a.num_nodes), torch.zeros(a.num_nodes, dtype=torch.long))
    n = int((c.keep < a.num_nodes).sum())
    assert torch.equal(c.keep[:n], alone.keep)
    assert 0.1 < len(alone.keep) / a.num_nodes < 0.5


def _regauged_forward(model, data, gamma):
    original = mesh_ops.tangent_frames

    def rotated(normal):
        e1, e2 = original(normal)
        c, s = torch.cos(gamma).to(normal.dtype)[:, None], torch.sin(gamma).to(normal.dtype)[:, None]
        return c * e1 + s * e2, -s * e1 + c * e2

    mesh_ops.tangent_frames = rotated
    try:
        return model(data)
    finally:
        mesh_ops.tangent_frames = original


@pytest.mark.parametrize("weights", ["uniform", "angle"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-4)])
def test_model_is_gauge_equivariant_and_rigid_motion_invariant(dtype, tol, weights):
    torch.manual_seed(0)
    data = _mesh(dtype)
    model = create("gem_seg", in_channels=2, num_classes=3, neighbour_weights=weights, **SMALL).to(dtype)
    model.train()
    for _ in range(2):  # non-trivial batch-norm statistics
        model(data)
    model.eval()
    gamma = torch.rand(data.num_nodes, dtype=torch.float64) * 2 * math.pi
    with torch.no_grad():
        out = model(data)
        scale = float(out.abs().max())
        assert float((_regauged_forward(model, data, gamma) - out).abs().max()) < tol * max(1, scale)
        rot = torch.tensor(Rotation.random(random_state=5).as_matrix(), dtype=dtype)
        moved = Data(pos=data.pos @ rot.T + torch.tensor([2.0, -3.0, 1.0], dtype=dtype),
                     face=data.face, x=data.x)
        assert float((model(moved) - out).abs().max()) < tol * max(1, scale)


def test_model_shapes_gradients_and_batches():
    torch.manual_seed(0)
    meshes = [_mesh(torch.float32, seed=s) for s in range(2)] + [_mesh(torch.float32, 1, 3)]
    model = create("gem_corr", in_channels=2, num_classes=5, **SMALL)
    batch = Batch.from_data_list(meshes[:2])
    batch.y = batch.y % 5
    out = model(batch)
    assert out.shape == (batch.num_nodes, 5)
    model.loss(out, batch).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    model.eval()
    with torch.no_grad():
        together = model(Batch.from_data_list(meshes))
        alone = model(meshes[2])
    torch.testing.assert_close(together[-meshes[2].num_nodes:], alone, atol=1e-4, rtol=1e-4)
    no_x = create("gem_seg", in_channels=0, num_classes=2, **SMALL).eval()
    assert no_x(Data(pos=meshes[0].pos, face=meshes[0].face)).shape == (meshes[0].num_nodes, 2)


def test_model_input_errors_name_the_argument():
    model = create("gem_seg", in_channels=2, num_classes=3, **SMALL).eval()
    data = _mesh(torch.float32)
    with pytest.raises(InvalidInputError, match="data.face is missing"):
        model(Data(pos=data.pos, x=data.x))
    bad = data.face.clone()
    bad[0, 3] = 10_000
    with pytest.raises(InvalidInputError, match=r"data.face\[:, 3\]"):
        model(Data(pos=data.pos, face=bad, x=data.x))
    with pytest.raises(InvalidInputError, match="data.x"):
        model(Data(pos=data.pos, face=data.face))
    nan = data.pos.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="data.pos"):
        model(Data(pos=nan, face=data.face, x=data.x))
    with pytest.raises(InvalidInputError, match="order"):
        create("gem_seg", num_classes=3, order=-1)
    with pytest.raises(InvalidInputError, match="levels"):
        create("gem_seg", num_classes=3, levels=0)


def _kept_entries(before: Tensor, after: Tensor) -> List[int]:
    """Indices of ``before`` whose values survive in ``after`` (unique running stats)."""
    return [int((before == value).nonzero()) for value in after]


@pytest.mark.parametrize("dtype,tol,kwargs", [
    (torch.float64, 1e-6, {}), (torch.float32, 1e-4, {}),
    (torch.float64, 1e-6, {"levels": 3, "depth": 2})])
def test_field_pruning_is_smaller_exact_and_gauge_equivariant(dtype, tol, kwargs):
    """Structured pruning removes half of the hidden rho-fields of every residual block and
    half of every residual stream's fields. The result equals the original with the hidden
    fields' consumers zeroed and the stream fields' writers zeroed (their batch norms and
    skip rows: the field is then 0 everywhere, so its readers see nothing), and it stays
    gauge equivariant."""
    from geo3d.efficiency import PruneConfig, prune
    from geo3d.models.gem.resnet import GemResBlock

    torch.manual_seed(0)
    data = _mesh(dtype)
    kw = {**SMALL, "width": 6, **kwargs}
    model = create("gem_seg", in_channels=2, num_classes=3, **kw).to(dtype)
    model.train()
    for _ in range(2):  # non-trivial (and distinct) batch-norm statistics
        model(data)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = prune(model, PruneConfig(method="structured", amount=0.5), data)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    reference = create("gem_seg", in_channels=2, num_classes=3, **kw).to(dtype)
    reference.load_state_dict(before)
    reference.eval()
    blocks = 2 * kw["depth"] + 1 if kw["levels"] == 2 else 3 * kw["depth"] + 2
    pairs = [(a, b) for a, b in zip(reference.modules(), out.modules()) if isinstance(a, GemResBlock)]
    assert len(pairs) == blocks
    ref_net, small_net = reference.backbone, out.backbone
    with torch.no_grad():
        stem_keep = _kept_entries(ref_net.stem_norm.running_mean, small_net.stem_norm.running_mean)
        assert len(stem_keep) == round(kw["width"] / 2)
        stem_drop = sorted(set(range(kw["width"])) - set(stem_keep))
        ref_net.stem_norm.weight[stem_drop] = 0
        ref_net.stem_norm.bias[stem_drop] = 0
        for ref, small in pairs:
            c = ref.conv1.out_channels
            assert small.conv1.out_channels == small.conv2.in_channels == round(c / 2)
            assert small.conv2.out_channels == round(ref.conv2.out_channels / 2)
            assert small.norm1.weight.shape == (round(c / 2),)
            # hidden fields: the norm1 entries that survived, found in the original
            keep = _kept_entries(ref.norm1.running_mean, small.norm1.running_mean)
            drop = sorted(set(range(c)) - set(keep))
            ref.conv2.weight[:, drop] = 0
            ref.conv2.self_weight[:, drop] = 0
            # stream fields written by this block
            keep = _kept_entries(ref.norm2.running_mean, small.norm2.running_mean)
            drop = sorted(set(range(ref.conv2.out_channels)) - set(keep))
            ref.norm2.weight[drop] = 0
            ref.norm2.bias[drop] = 0
            if ref.skip is not None:
                ref.skip.weight[drop] = 0
    assert sum(p.numel() for p in out.parameters()) < 0.5 * sum(p.numel() for p in model.parameters())
    gamma = torch.rand(data.num_nodes, dtype=torch.float64) * 2 * math.pi
    with torch.no_grad():
        pruned = out(data)
        torch.testing.assert_close(pruned, reference(data), atol=tol, rtol=tol)
        scale = float(pruned.abs().max())
        assert float((_regauged_forward(out, data, gamma) - pruned).abs().max()) < tol * max(1, scale)
