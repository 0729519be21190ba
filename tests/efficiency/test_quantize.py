"""quantize: PT2E int8 (numerics vs float, report), LSQ+ (quantizer math, init, training)."""

from __future__ import annotations

import pytest
import torch
from e3nn.nn import FullyConnectedNet
from torch import nn

from geo3d.efficiency import QuantConfig, quantize
from geo3d.efficiency.quantize import LSQQuantizer, QuantizedBlock, mlp_blocks
from geo3d.errors import InvalidInputError

from tests.efficiency._models import assert_unchanged, batch, build, snapshot


@pytest.mark.parametrize("name", ["dgcnn_seg", "equivariant_seg",
                                  pytest.param("pointnet2_seg", marks=pytest.mark.slow)])
def test_ptq_int8_close_to_float_and_reports(name):
    model = build(name).eval()
    data = [batch(model, n=96, seed=s) for s in range(3)]
    before = snapshot(model)
    q = quantize(model, QuantConfig(compile=False), data)
    assert_unchanged(model, before)
    report = q.quant_report
    # the e3nn radial MLPs are quantized as blocks too (the input keeps its e3nn nets)
    radials = [n for n, m in model.named_modules() if isinstance(m, FullyConnectedNet)]
    assert len(radials) == (2 if name.startswith("equivariant") else 0)
    assert report.quantized == radials + [n for n, _ in mlp_blocks(model)]
    assert all(isinstance(q.get_submodule(n), QuantizedBlock) for n in report.quantized)
    assert not any(isinstance(m, QuantizedBlock) for m in model.modules())
    with torch.no_grad():
        ref, out = model(data[0]), q(data[0])
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.9
    # the int8 weights really are int8, and the modules outside the blocks are listed
    graphs = [q.get_submodule(n).graph for n in report.quantized]
    assert any(t.dtype == torch.int8 for g in graphs for t in vars(g).values() if isinstance(t, torch.Tensor)) \
        or any(b.dtype == torch.int8 for g in graphs for b in g.buffers())
    if name.startswith("equivariant"):
        assert not any(".radial" in m for m in report.float_modules)
        for i in range(2):
            assert {f"backbone.layers.{i}.{m}" for m in ("lin_in", "tp", "lin_out", "gate")} \
                <= set(report.float_modules)
    else:
        assert any(m.endswith(".first") for m in report.float_modules)  # split first layers


def test_e3nn_fully_connected_net_as_sequential_is_exact():
    """The ``nn.Sequential`` ptq_int8 quantizes computes what the e3nn net does (float64)."""
    from geo3d.efficiency._e3nn_fc import as_sequential

    model = build("equivariant_seg", radial_hidden=16).double()
    torch.manual_seed(0)
    nets = [layer.radial for layer in model.backbone.layers] + [
        FullyConnectedNet([4, 8, 6, 5], torch.tanh, variance_in=2, variance_out=3).double(),
        FullyConnectedNet([4, 8, 5], torch.relu).double(), FullyConnectedNet([4, 5]).double()]
    x = torch.randn(50, 4, dtype=torch.float64) * 2
    for net in nets:
        seq = as_sequential(net)
        assert [type(m) for m in seq][::2] == [nn.Linear] * (len(net.hs) - 1)
        assert all(m.bias is None and m.weight.dtype == torch.float64 for m in seq[::2])
        with torch.no_grad():
            torch.testing.assert_close(seq(x), net(x), rtol=0, atol=1e-10)
    assert [type(m) for m in as_sequential(nets[0])][1::2] == [nn.SiLU, nn.SiLU]
    # an activation nn cannot name, or one after the last layer (its constant): not converted
    assert as_sequential(FullyConnectedNet([4, 8, 5], torch.abs)) is None
    assert as_sequential(FullyConnectedNet([4, 8, 5], torch.tanh, out_act=True)) is None


def test_quantized_block_handles_one_row_and_size():
    model = build("equivariant_seg", width=16, head_hidden=64).eval()
    q = quantize(model, QuantConfig(compile=False), batch(model, n=64))
    blk = q.get_submodule(q.quant_report.quantized[-1])
    x = torch.randn(1, blk.graph.graph.find_nodes(op="placeholder")[0].meta["val"].shape[1])
    assert blk(x).shape[0] == 1
    float_bytes = sum(p.numel() * 4 for p in model.get_submodule(q.quant_report.quantized[-1]).parameters())
    assert blk.serialized_size() < float_bytes


@pytest.mark.slow
def test_ptq_int8_compiled_matches_eager_quantized():
    model = build("dgcnn_seg").eval()
    data = [batch(model, n=96, seed=s) for s in range(2)]
    eager = quantize(model, QuantConfig(compile=False), data)
    compiled = quantize(model, QuantConfig(compile=True), data)
    with torch.no_grad():
        torch.testing.assert_close(compiled(data[0]), eager(data[0]), rtol=0.05, atol=0.02)


def test_lsq_quantizer_grid_and_init():
    torch.manual_seed(0)
    w = torch.randn(1000) * 0.1 + 0.02
    qw = LSQQuantizer(4, signed=True)
    out = qw(w)
    mu, sigma = w.mean(), w.std()
    expected_s = max(abs(mu - 3 * sigma), abs(mu + 3 * sigma)) / 8
    assert float(qw.scale) == pytest.approx(float(expected_s), rel=1e-5)
    levels = torch.unique(torch.round(out / qw.scale).detach())
    assert levels.min() >= -8 and levels.max() <= 7 and len(levels) <= 16
    torch.testing.assert_close(out, torch.clamp(torch.round(w / qw.scale), -8, 7) * qw.scale)
    # activations: asymmetric, offset = min, range covers [min, max]
    a = torch.rand(500) * 3 - 0.5
    qa = LSQQuantizer(2, signed=False)
    out = qa(a)
    assert float(qa.offset) == pytest.approx(float(a.min()), abs=1e-6)
    assert float(qa.scale) == pytest.approx(float(a.max() - a.min()) / 3, rel=1e-5)
    assert len(torch.unique(out.detach())) <= 4


def test_lsq_gradients_ste_and_scaled():
    q = LSQQuantizer(8, signed=True)
    q(torch.linspace(-1, 1, 101))  # initialise: s = 3 sigma / 128, range about +-1.7
    x = torch.linspace(-0.7, 2.5, 101, requires_grad=True)  # the top values clip
    y = q(x)
    y.sum().backward()
    inside = (x.detach() / q.scale.detach()) < 127
    assert not inside.all()
    assert torch.equal(x.grad[inside], torch.ones(int(inside.sum())))  # straight through
    # LSQ scale gradient: sum over x of (round(v) - v) inside, Q_n/Q_p outside; times g
    v = x.detach() / q.scale.detach()
    raw = torch.where(v < -128, torch.full_like(v, -128.0),
                      torch.where(v > 127, torch.full_like(v, 127.0), torch.round(v) - v)).sum()
    g = 1 / (101 * 127) ** 0.5
    assert float(q.scale.grad) == pytest.approx(float(raw) * g, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_qat_lsq_trains_and_leaves_input(bits):
    model = build("dgcnn_seg")
    data = [batch(model, n=64, seed=s) for s in range(2)]
    before = snapshot(model)
    q = quantize(model, QuantConfig(method="qat_lsq", bits=bits, steps=4, lr=1e-3), data)
    assert_unchanged(model, before)
    report = q.quant_report
    assert report.bits == bits and len(report.quantized) == sum(
        isinstance(m, nn.Linear) for m in model.modules())
    first = q.backbone.convs[0].first
    levels = torch.unique(torch.round(first.weight / first.parametrizations.weight[0].scale.abs()))
    assert len(levels) <= 2**bits  # EdgeConv reads .weight directly: it is quantized
    q.eval()
    with torch.no_grad():
        assert torch.isfinite(q(data[0])).all()


def test_quantize_errors():
    model = build("dgcnn_seg")
    data = batch(model, n=64)
    with pytest.raises(InvalidInputError, match="bits"):
        QuantConfig(bits=3)
    with pytest.raises(InvalidInputError, match="ptq_int8"):
        QuantConfig(method="ptq_int8", bits=4)
    with pytest.raises(InvalidInputError, match="method"):
        QuantConfig(method="fp8")
    with pytest.raises(InvalidInputError, match="float32"):
        quantize(build("dgcnn_seg").double(), QuantConfig(), data)
    with pytest.raises(InvalidInputError, match="calibration"):
        quantize(model, QuantConfig(), None)
    with pytest.raises(InvalidInputError, match="calibration is empty"):
        quantize(model, QuantConfig(), [])
    with pytest.raises(InvalidInputError, match="no MLP block"):
        quantize(nn.Linear(3, 3), QuantConfig(), torch.randn(4, 3))
    with pytest.raises(InvalidInputError, match="loss"):
        quantize(nn.Linear(3, 3), QuantConfig(method="qat_lsq"), torch.randn(4, 3))


def test_row_buckets_bound_padding_and_shapes():
    from geo3d.efficiency.quantize import _bucket

    buckets = {_bucket(r) for r in range(17, 100_000)}
    assert all(r <= _bucket(r) <= r * 1.125 + 1 for r in range(2, 100_000))
    assert len(buckets) < 8 * 14  # ~8 shapes per doubling, not one per row count
    assert [_bucket(r) for r in (2, 16, 17, 81920)] == [2, 16, 18, 81920]


def test_compiled_block_one_kernel_per_bucket_in_every_grad_mode():
    """Kernels are shared by no_grad, inference_mode and grad mode (torch.compile's
    guards recompiled per mode and fell back to the slow graph past their limit)."""
    import copy

    model = build("equivariant_seg", width=16, head_hidden=64).eval()
    q = quantize(model, QuantConfig(compile=True), batch(model, n=64))
    blk = q.get_submodule(q.quant_report.quantized[-1])
    width = blk.graph.graph.find_nodes(op="placeholder")[0].meta["val"].shape[1]
    g = torch.Generator().manual_seed(0)
    for rows in (40, 100):
        x = torch.randn(rows, width, generator=g)
        with torch.no_grad():
            ref = blk.graph(x)
            a = blk(x)
        with torch.inference_mode():
            b = blk(x)
        c = blk(x.clone().requires_grad_())
        for out in (a, b, c):
            assert out.shape == ref.shape
            torch.testing.assert_close(out.detach(), ref, rtol=0.05, atol=0.02)
    assert sorted(k[0] for k in blk._kernels) == [40, 104]  # buckets of 40 and 100 rows
    twin = copy.deepcopy(q)  # kernels are not copied; the copy compiles its own
    assert twin.get_submodule(q.quant_report.quantized[-1])._kernels == {}
    with torch.no_grad():
        torch.testing.assert_close(twin(batch(model, n=64)), q(batch(model, n=64)))


def test_compiled_int8_macs_are_counted_like_the_float_model():
    from geo3d.efficiency import count_macs

    model = build("equivariant_seg", width=16, head_hidden=64).eval()
    data = batch(model, n=64)
    q = quantize(model, QuantConfig(compile=True), data)
    assert count_macs(q, data) == pytest.approx(count_macs(model, data), rel=0.02)
