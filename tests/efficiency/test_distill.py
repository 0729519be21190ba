"""Distillation: the KD loss against scipy, the selective guide, and the three methods."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy as scipy_kl
from torch_geometric.data import Batch

from geo3d.efficiency import DistillConfig, distill, kd_loss
from geo3d.efficiency.distill import Distiller, kd_per_row, selective_weights
from geo3d.efficiency.quantize import LSQQuantizer
from geo3d.errors import InvalidInputError
from geo3d.tasks import TrainConfig

from ._models import assert_unchanged, batch, build, cloud, snapshot

KD_TRAIN = TrainConfig(epochs=8, batch_size=6, lr=1e-2, progress=False, tensorboard=False,
                       device="cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_matches_scipy(dtype, temperature):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 4, generator=g, dtype=dtype)
    t = 3 * torch.randn(5, 4, generator=g, dtype=dtype)
    ref = [temperature**2 * scipy_kl(softmax(ti / temperature), softmax(si / temperature))
           for si, ti in zip(s.double().numpy(), t.double().numpy())]
    rows = kd_per_row(s, t, temperature)
    assert rows.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(rows.double().numpy(), ref, rtol=tol, atol=tol)
    assert float(kd_loss(s, t, temperature)) == pytest.approx(float(np.mean(ref)), rel=tol, abs=tol)
    assert float(kd_loss(t, t, temperature)) == pytest.approx(0.0, abs=tol)
    with pytest.raises(InvalidInputError, match="temperature"):
        kd_loss(s, t, 0.0)
    with pytest.raises(InvalidInputError, match="logits"):
        kd_loss(s, t[:, :3])


def test_selective_weights_favour_learnable_samples():
    gaps = torch.tensor([0.1, 0.5, 2.0, 8.0, 0.3])
    w = selective_weights(gaps, 0.7)
    assert float(w.mean()) == pytest.approx(1.0)
    order = gaps.argsort()
    assert bool((w[order][1:] < w[order][:-1]).all())  # larger gap, smaller weight
    assert torch.equal(selective_weights(torch.tensor([3.0]), 0.5), torch.ones(1))


def _data(task: str, n: int = 6) -> list:
    items = [cloud(96, 200 + i) for i in range(n)]
    if task == "classification":
        for i, d in enumerate(items):
            d.y = torch.tensor([i % 3])
    return items


@torch.no_grad()
def _gap(student, teacher, data) -> float:
    """KL to the teacher with batch statistics (what training optimises; a copy runs)."""
    torch.manual_seed(0)  # PointNet++'s random FPS start in training mode
    return float(kd_loss(copy.deepcopy(student).train()(data), teacher.eval()(data)))


@pytest.mark.parametrize("method,name", [("kd", "dgcnn_cls"), ("selective", "pointnet2_seg")])
def test_distill_brings_student_to_teacher(method, name):
    teacher, student = build(name, width=16), build(name, dropout=0.0)
    with torch.no_grad():  # a confident teacher: something to learn
        teacher.head.mlp[-1].weight.mul_(20)
    before_t, before_s = snapshot(teacher), snapshot(student)
    data = _data(teacher.task)
    probe = Batch.from_data_list(data)
    gap0 = _gap(student, teacher, probe)
    out = distill(student, teacher, data, DistillConfig(method=method, alpha=1.0, temperature=1.0), KD_TRAIN)
    assert out is not student and _gap(out, teacher, probe) < gap0
    assert_unchanged(teacher, before_t)
    assert_unchanged(student, before_s)


def test_qkd_student_is_fake_quantized():
    teacher, student = build("dgcnn_cls", width=16), build("dgcnn_cls")
    config = DistillConfig(method="qkd", bits=4, qat_steps=2)
    out = distill(student, teacher, _data("classification", 4), config,
                  TrainConfig(epochs=1, batch_size=2, progress=False, tensorboard=False, device="cpu"))
    assert out.quant_report.bits == 4
    quantizers = [m for m in out.modules() if isinstance(m, LSQQuantizer)]
    assert quantizers and any(q.bits == 4 for q in quantizers)
    assert bool(torch.isfinite(out.eval()(batch(out))).all())


def test_distiller_contract_and_errors():
    teacher, student = build("dgcnn_seg", width=16), build("dgcnn_seg")
    wrapper = Distiller(student, teacher, DistillConfig(alpha=0.5))
    b = batch(student)
    assert not any(p.requires_grad for p in wrapper.teacher.parameters())
    wrapper.train()
    assert not wrapper.teacher.training
    out = wrapper(b)
    mixed = wrapper.loss(out, b)
    expect = 0.5 * student.loss(out, b) + 0.5 * kd_loss(out, teacher(b).detach(), 4.0)
    torch.testing.assert_close(mixed, expect)
    wrapper.eval()
    torch.testing.assert_close(wrapper.loss(out, b), student.loss(out, b))
    with pytest.raises(InvalidInputError, match="same task"):
        distill(build("dgcnn_cls"), teacher, _data("segmentation"), DistillConfig())
    for bad in (dict(method="x"), dict(alpha=1.5), dict(bits=3), dict(temperature=0.0),
                dict(qat_steps=0), dict(keep_fraction=0.0)):
        with pytest.raises(InvalidInputError):
            DistillConfig(**bad)
