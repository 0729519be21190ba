"""Equivariance-aware quantization: IrrepsQuantizer math, quantized e3nn models stay
equivariant, per-component quantization does not (the contrast), QAT trains the scales."""

from __future__ import annotations

import copy

import pytest
import torch
from e3nn import o3

from geo3d.efficiency import IrrepsQuantizer, QuantConfig, quantize
from geo3d.efficiency.equivariant_quant import attach_irreps_quantizers
from geo3d.efficiency.quantize import LSQQuantizer
from geo3d.errors import InvalidInputError
from geo3d.testing import assert_equivariant, random_orthogonal, wigner_d_from_matrix

from tests.efficiency._models import assert_unchanged, batch, build, snapshot

IRREPS = o3.Irreps("3x0e+2x0o+2x1o+1x1e+1x2e")
# two layers: with one, vectors never reach the invariant logits (the first layer's 0e
# messages only read the spherical harmonics' constant 0e), so a logits check could not fail
TINY = dict(width=2, lmax=1, depth=2, head_hidden=8)
E3NN_LAYERS = {f"backbone.layers.{i}.{n}" for i in range(2)
               for n in ("lin_in", "tp", "lin_out", "self_connection", "gate",
                         "radial.layer0", "radial.layer1", "radial.layer2")}


def _features(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, IRREPS.dim, generator=g, dtype=torch.float64) * 2 + 0.5).to(dtype)


def _blocks(q: IrrepsQuantizer, x: torch.Tensor):
    """(irrep, x block [N, mul, dim], scales [mul], offsets [mul] or None) per irreps slot."""
    ch = off = 0
    for (mul, ir), cols in zip(q.irreps, q.irreps.slices()):
        s = q.scale[ch:ch + mul].detach().abs()
        beta = q.offset[off:off + mul].detach() if ir == o3.Irrep("0e") else None
        off += mul if beta is not None else 0
        ch += mul
        yield ir, x[:, cols].reshape(len(x), mul, ir.dim), s, beta


def _double(data):
    out = data.clone()
    out.pos, out.x = data.pos.double(), data.x.double()
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_irreps_quantizer_error_is_at_most_half_a_step(bits, dtype):
    x = _features(200, dtype)
    q = IrrepsQuantizer(IRREPS, bits)
    out = q(x).detach()  # the first call initialises from x's range: every value in range
    eps = 1e-5 if dtype == torch.float32 else 1e-12
    for (ir, v, s, beta), (_, qv, _, _) in zip(_blocks(q, x), _blocks(q, out)):
        if beta is not None:  # 0e: affine grid per channel, error <= s / 2
            levels = (qv[..., 0] - beta) / s
            assert ((v - qv).abs()[..., 0] <= s / 2 + eps).all()
            assert (levels.round() - levels).abs().max() < 1e-3 and levels.min() > -1e-3
            assert levels.max() < 2**bits - 1 + 1e-3
            continue
        qp = 2 ** (bits - 1) - 1 if ir.l == 0 else 2**bits - 1
        n, qn = v.norm(dim=-1), qv.norm(dim=-1)
        assert ((qn - n).abs() <= s / 2 + eps * (1 + n)).all()  # the norm: half a step
        assert ((qv - v).norm(dim=-1) <= s / 2 + eps * (1 + n)).all()  # the direction is kept
        levels = qn / s
        assert (levels.round() - levels).abs().max() < 1e-3 and levels.max() < qp + 1e-3
        cos = (qv * v).sum(-1) / (qn * n).clamp_min(1e-30)
        assert ((qn == 0) | (cos > 1 - 1e-5)).all()  # parallel to v (same sign for 0o)
    # the zero vector: q(0) = 0 (except 0e, whose grid has an offset) with finite gradients
    z = torch.zeros(3, IRREPS.dim, dtype=dtype, requires_grad=True)
    qz = q(z)
    assert all((b == 0).all() for ir, b, _, _ in _blocks(q, qz.detach()) if ir != o3.Irrep("0e"))
    qz.sum().backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(q.scale.grad).all()


def test_norm_quantization_commutes_with_rotations_and_per_component_does_not():
    x = _features(300, torch.float64)
    q, plain = IrrepsQuantizer(IRREPS, 4), LSQQuantizer(4, signed=False)
    qx, px = q(x).detach(), plain(x).detach()  # both initialise on x
    gen = torch.Generator().manual_seed(0)
    for det in (1, -1):  # a rotation and a reflection
        d = wigner_d_from_matrix(IRREPS, random_orthogonal(gen, det))
        torch.testing.assert_close(q(x @ d.T).detach(), qx @ d.T, rtol=0, atol=1e-12)
        # the quantization error rotates with the features: the same error in every pose
        err_back = (q(x @ d.T).detach() - x @ d.T) @ d
        torch.testing.assert_close(err_back, qx - x, rtol=0, atol=1e-12)
        # ... and per-component rounding of the same features is not equivariant
        wrong = (plain(x @ d.T).detach() - px @ d.T).abs().max()
        assert wrong > 0.25 * plain.scale.abs()


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("name", ["equivariant_cls", "equivariant_seg"])
def test_quantized_equivariant_model_stays_equivariant(name, bits):
    """Invariant logits in float32 (default tolerance); logits and equivariant features in
    float64 (1e-9: exact). The float32 *features* are not checked: a value within float32
    rounding of a step boundary rounds one step differently in another pose (module
    docstring). Measured: 3 of 80 float32 feature checks (4 poses, 128 points, fresh seeds)
    saw one such element (error 0.03 at 8 bits, 0.3 at 4); the logits never did."""
    model = build(name, **TINY)
    data = [batch(model, n=64, seed=s) for s in range(2)]
    before = snapshot(model)
    q = quantize(model, QuantConfig(method="qat_lsq", bits=bits, equivariant=True, steps=2), data)
    assert_unchanged(model, before)
    report = q.quant_report
    assert set(report.quantized) == E3NN_LAYERS | {"head.0", "head.2"} and report.float_modules == []
    assert report.layer_bits == {**{n: bits for n in report.quantized}, "head.2": 8}
    lin = q.backbone.layers[0].lin_in
    assert len(torch.unique(lin.weight.detach())) <= 2**bits  # e3nn path weights are quantized
    assert not any(isinstance(m, IrrepsQuantizer) for m in model.modules())
    q.eval()
    assert_equivariant(q, data[0], trials=2)
    q64, d64 = copy.deepcopy(q).double(), _double(data[0])
    assert_equivariant(q64, d64, trials=2)
    assert_equivariant(q64.features, d64, irreps_out=q64.irreps_out, trials=2)


def test_per_component_quantization_breaks_model_equivariance():
    """The contrast: the same model with plain per-component LSQ+ quantizers on the same
    irreps inputs fails the check that the by-norm quantizers pass (float64: no rounding
    ties between poses)."""
    model = build("equivariant_seg", **TINY)
    data = batch(model, n=64)
    q = quantize(model, QuantConfig(method="qat_lsq", bits=4, equivariant=True, steps=1), [data]).eval()
    q, data = q.double(), _double(data)
    plain = copy.deepcopy(q)
    for m in list(plain.modules()):
        if hasattr(m, "irreps_quantizers"):
            for key in list(m.irreps_quantizers):  # signed: vector components are signed
                m.irreps_quantizers[key] = LSQQuantizer(4, signed=True).double()
    assert_equivariant(q.features, data, irreps_out=q.irreps_out, trials=2)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(plain.features, data, irreps_out=plain.irreps_out, trials=2)
    assert_equivariant(q, data, trials=2)
    # the invariant scalars the head reads (its own 4-bit input rounding can hide the error)
    scalars = plain.backbone.scalar_index
    with pytest.raises(AssertionError, match="not invariant"):
        assert_equivariant(lambda d: plain.features(d)[:, scalars], data, trials=2)


def test_qat_steps_train_the_scales():
    model = build("equivariant_seg", **TINY)
    data = batch(model, n=64)
    work = copy.deepcopy(model)
    names = attach_irreps_quantizers(work, 4)
    assert set(names) == E3NN_LAYERS
    quantizers = [m for m in work.modules() if isinstance(m, IrrepsQuantizer)]
    assert len(quantizers) == 12  # per layer: lin_in, tp (2 inputs), lin_out, self_connection, gate
    opt = torch.optim.Adam(work.parameters(), lr=1e-2)
    work.train()
    for step in range(3):
        opt.zero_grad()
        loss = work.loss(work(data), data)
        assert torch.isfinite(loss)
        if step == 0:  # initialised by this first forward
            init = [m.scale.detach().clone() for m in quantizers]
        loss.backward()
        assert all(torch.isfinite(m.scale.grad).all() for m in quantizers)
        opt.step()
    assert all(not torch.equal(m.scale.detach(), s) for m, s in zip(quantizers, init))
    # end to end: quantize() trains too and its loss stays finite
    q = quantize(model, QuantConfig(method="qat_lsq", bits=2, equivariant=True, steps=3), [data])
    assert torch.isfinite(q.loss(q(data), data))


def test_equivariant_quantization_errors():
    with pytest.raises(InvalidInputError, match="equivariant"):
        QuantConfig(method="ptq_int8", equivariant=True)
    with pytest.raises(InvalidInputError, match="equivariant"):
        QuantConfig(method="qat_lsq", equivariant="yes")
    model = build("dgcnn_seg")
    with pytest.raises(InvalidInputError, match="no e3nn layer"):
        quantize(model, QuantConfig(method="qat_lsq", equivariant=True, steps=1), batch(model, n=32))
    with pytest.raises(InvalidInputError, match="irreps"):
        IrrepsQuantizer("3xfoo", 4)
    with pytest.raises(InvalidInputError, match="bits"):
        IrrepsQuantizer(IRREPS, 1)
    with pytest.raises(InvalidInputError, match=str(IRREPS.dim)):
        IrrepsQuantizer(IRREPS, 4)(torch.zeros(5, IRREPS.dim + 1))
