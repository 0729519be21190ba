"""PointNet++: set abstraction sizes and message, 3-NN interpolation on hand cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.models import create
from geo3d.models.backbones.pointnet2 import PointNetConv, SetAbstraction, knn_interpolate


def test_set_abstraction_output_sizes():
    torch.manual_seed(0)
    sa = SetAbstraction(2, (8, 8), ratio=0.25, r=0.5, max_neighbors=4).eval()
    sizes = [100, 37]
    pos = torch.randn(sum(sizes), 3)
    x = torch.randn(sum(sizes), 2)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))
    with torch.no_grad():
        out, pos_c, batch_c = sa(x, pos, batch)
    m = [math.ceil(0.25 * n) for n in sizes]
    assert out.shape == (sum(m), 8) and pos_c.shape == (sum(m), 3)
    assert torch.bincount(batch_c).tolist() == m
    # centroids are input points of their own cloud
    assert all(((pos - p).abs().sum(1) == 0).nonzero()[0].item() in range(*((0, 100) if b == 0 else (100, 137)))
               for p, b in zip(pos_c, batch_c))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pointnet_conv_matches_dense_reference(dtype):
    torch.manual_seed(0)
    conv = PointNetConv(2, (4, 3)).to(dtype).eval()
    for mod in conv.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    x, pos = torch.randn(6, 2, dtype=dtype), torch.randn(6, 3, dtype=dtype)
    pos_c = pos[[1, 4]]
    groups = {0: [1, 0, 5], 1: [4, 2]}  # centroid -> its points
    ei = torch.tensor([[j for c in groups for j in groups[c]], [c for c in groups for _ in groups[c]]])
    with torch.no_grad():
        out = conv(x, pos, pos_c, ei)
        ref = torch.stack([
            torch.stack([conv.post(conv.first(torch.cat([x[j], pos[j] - pos_c[c]])[None]))[0] for j in groups[c]]).amax(0)
            for c in groups
        ])  # fmt: skip
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_interpolate_hand_case(dtype):
    pos_x = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 4, 0], [10, 10, 10], [5, 5, 5]], dtype=dtype)
    x = torch.tensor([[1.0, 0], [0, 1], [3, 3], [100, 100], [7, 7]], dtype=dtype)
    batch_x = torch.tensor([0, 0, 0, 0, 1])
    pos_y = torch.tensor([[1.0, 1, 0], [2, 0, 0], [9, 9, 9]], dtype=dtype)
    batch_y = torch.tensor([0, 0, 1])
    out = knn_interpolate(x, pos_x, pos_y, batch_x, batch_y, k=3)
    # y0: squared distances 2, 2, 10 to points 0, 1, 2 -> weights 1/2, 1/2, 1/10
    w = torch.tensor([0.5, 0.5, 0.1], dtype=dtype)
    y0 = (w[:, None] * x[:3]).sum(0) / w.sum()
    expected = torch.stack([y0, x[1], x[4]])  # coincident point copies; cloud 1 has one point
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, expected, **tol)


def _interpolate_reference(x, pos_x, pos_y, batch_x, batch_y, k):
    """Brute force: per query, the k nearest of its item by (distance, index)."""
    out = torch.zeros(pos_y.shape[0], x.shape[1], dtype=torch.float64)
    for i in range(pos_y.shape[0]):
        cand = (batch_x == batch_y[i]).nonzero().squeeze(1)
        if cand.numel() == 0:
            continue
        d2 = (pos_x[cand].double() - pos_y[i].double()).pow(2).sum(1)
        near = cand[torch.argsort(d2, stable=True)[:k]]
        w = 1 / (pos_x[near].double() - pos_y[i].double()).pow(2).sum(1).clamp_min(1e-16)
        out[i] = (w[:, None] * x[near].double()).sum(0) / w.sum()
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_knn_interpolate_matches_brute_force_with_and_without_gradients(dtype, monkeypatch):
    """The CSR product (CPU float32/64) and the gather-scatter form (other dtypes, or a
    gradient to the positions) give the brute-force answer, and the gradient of x."""
    csr = torch.sparse_csr_tensor  # torch's CSR invariants (sorted columns) must hold
    monkeypatch.setattr(torch, "sparse_csr_tensor", lambda *a, **k: csr(*a, **{**k, "check_invariants": True}))
    g = torch.Generator().manual_seed(0)
    pos_x, pos_y = torch.rand(60, 3, generator=g), torch.rand(45, 3, generator=g)
    batch_x = torch.tensor([0] * 30 + [2] * 30)  # item 1 has queries but no points
    batch_y = torch.tensor([0] * 20 + [1] * 5 + [2] * 20)
    x = torch.randn(60, 5, generator=g)
    ref = _interpolate_reference(x, pos_x, pos_y, batch_x, batch_y, 3)
    rounded = [t.to(dtype) for t in (x, pos_x, pos_y)]  # the neighbours bf16 positions have
    ref_dtype = _interpolate_reference(*rounded, batch_x, batch_y, 3)
    tol = dict(rtol=5e-2, atol=5e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-5)
    xs = x.to(dtype).clone().requires_grad_()
    out = knn_interpolate(xs, pos_x.to(dtype), pos_y.to(dtype), batch_x, batch_y)
    assert out.dtype == dtype and out.shape == (45, 5)
    torch.testing.assert_close(out.double(), ref_dtype, **tol)
    assert (out[20:25] == 0).all()  # no points to interpolate from
    out.square().sum().backward()
    py = pos_y.double().requires_grad_()  # a gradient to the positions: gather-scatter
    out64 = knn_interpolate(x.double().clone().requires_grad_(), pos_x.double(), py, batch_x, batch_y)
    torch.testing.assert_close(out64, ref)
    out64.square().sum().backward()
    assert py.grad is not None and torch.isfinite(py.grad).all() and py.grad.abs().sum() > 0
    # d/dx of sum(out^2) is W^T (2 out): the same whichever form computed it
    xr = x.double().clone().requires_grad_()
    knn_interpolate(xr, pos_x.double(), pos_y.double(), batch_x, batch_y).square().sum().backward()
    torch.testing.assert_close(xs.grad.double(), xr.grad, **tol)


def test_lidar_sized_defaults_downsample_first():
    model = create("pointnet2_seg", num_classes=4)
    assert model.backbone.sa[0].ratio <= 0.125
    model = create("pointnet2_seg", num_classes=4, width=4, ratios=(0.1, 0.5), radii=(2.0, 4.0)).eval()
    pos = torch.rand(3000, 3) * 40
    with torch.no_grad():
        out = model(Data(pos=pos))
    assert out.shape == (3000, 4) and torch.isfinite(out).all()


def test_depth_sets_the_number_of_levels():
    from geo3d.models import create

    for depth in (1, 3, 5):
        model = create("pointnet2_seg", num_classes=3, width=8, depth=depth).eval()
        levels = [(sa.ratio, sa.r) for sa in model.backbone.sa]
        assert len(levels) == depth == len(model.backbone.fp)
        assert levels[0] == (0.125, 0.25)  # the first levels keep the given ratios and radii
        assert all(r2 == 2 * r1 for (_, r1), (_, r2) in zip(levels[3:], levels[4:]))
        out = model(Data(pos=torch.rand(300, 3)))
        assert out.shape == (300, 3)
    cls = create("pointnet2_cls", num_classes=3, width=8, depth=1)
    assert len(cls.backbone.sa) == 1
    with pytest.raises(InvalidInputError, match="depth"):
        create("pointnet2_cls", num_classes=3, depth=0)


def test_too_small_a_cloud_for_the_depth_raises_a_clear_error():
    model = create("pointnet2_seg", num_classes=3, width=8, depth=5).train()
    with pytest.raises(InvalidInputError, match="too few points"):
        model(Data(pos=torch.rand(300, 3)))
    assert model.eval()(Data(pos=torch.rand(300, 3))).shape == (300, 3)  # eval needs no stats
