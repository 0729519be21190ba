"""GEM-CNN: kernel constraint, gauge equivariance of every layer and of the whole model,
rigid-motion invariance, the two convolution paths, coarsening, shapes, gradients, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation
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


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-4)])
def test_field_pruning_is_smaller_exact_and_gauge_equivariant(dtype, tol):
    """Structured pruning removes whole rho-fields inside the residual blocks: the result
    equals the original with those fields' consumers zeroed, and stays gauge equivariant."""
    from geo3d.efficiency import PruneConfig, prune
    from geo3d.models.gem.resnet import GemResBlock

    torch.manual_seed(0)
    data = _mesh(dtype)
    model = create("gem_seg", in_channels=2, num_classes=3, **{**SMALL, "width": 6}).to(dtype)
    model.train()
    for _ in range(2):  # non-trivial batch-norm statistics
        model(data)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = prune(model, PruneConfig(method="structured", amount=0.5), data)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    reference = create("gem_seg", in_channels=2, num_classes=3, **{**SMALL, "width": 6}).to(dtype)
    reference.load_state_dict(before)
    reference.eval()
    pairs = [(a, b) for a, b in zip(reference.modules(), out.modules()) if isinstance(a, GemResBlock)]
    assert len(pairs) == 3  # two encoder levels, one decoder block
    for ref, small in pairs:
        c = ref.conv1.out_channels
        assert small.conv1.out_channels == small.conv2.in_channels == round(c / 2)
        assert small.norm1.weight.shape == (round(c / 2),)
        # which fields were kept: the rows of conv1 that survived, found in the original
        rows = ref.conv1.weight.flatten(1)
        keep = [int((rows == r).all(1).nonzero()) for r in small.conv1.weight.flatten(1)]
        drop = sorted(set(range(c)) - set(keep))
        with torch.no_grad():
            ref.conv2.weight[:, drop] = 0
            ref.conv2.self_weight[:, drop] = 0
    assert sum(p.numel() for p in out.parameters()) < sum(p.numel() for p in model.parameters())
    gamma = torch.rand(data.num_nodes, dtype=torch.float64) * 2 * math.pi
    with torch.no_grad():
        pruned = out(data)
        torch.testing.assert_close(pruned, reference(data), atol=tol, rtol=tol)
        scale = float(pruned.abs().max())
        assert float((_regauged_forward(out, data, gamma) - pruned).abs().max()) < tol * max(1, scale)
