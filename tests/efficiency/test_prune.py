"""prune: magnitude (layer/global, against torch.nn.utils.prune's rule), LTP, structured."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from geo3d.efficiency import PruneConfig, compression_ratio, prune, sparsity
from geo3d.errors import InvalidInputError
from geo3d.testing import assert_equivariant

from tests.efficiency._models import assert_unchanged, batch, build, cloud, snapshot


def _two_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Linear(10, 4))


def test_magnitude_layerwise_zeroes_the_smallest_of_each_layer():
    model = _two_layers()
    before = snapshot(model)
    out = prune(model, PruneConfig(method="magnitude", amount=0.3))
    assert_unchanged(model, before)
    for i in (0, 3):
        w0, w1 = model[i].weight.detach(), out[i].weight.detach()
        n_zero = round(0.3 * w0.numel())
        assert int((w1 == 0).sum()) == n_zero
        thresh = w0.abs().flatten().sort().values[n_zero - 1]
        assert torch.equal(w1, torch.where(w0.abs() <= thresh, torch.zeros_like(w0), w0))
    assert torch.equal(out[1].weight, model[1].weight)  # norms untouched
    assert sparsity(out) == pytest.approx((18 + 12) / 100)


def test_magnitude_global_uses_one_threshold():
    model = _two_layers()
    with torch.no_grad():
        model[3].weight.mul_(100)  # the second layer's weights all exceed the first's
    out = prune(model, PruneConfig(amount=0.5, scope="global"))
    assert int((out[0].weight == 0).sum()) == 50 and int((out[3].weight == 0).sum()) == 0
    assert compression_ratio(out) == pytest.approx(100 / 50)


@pytest.mark.parametrize("name", ["dgcnn_seg", "pointnet2_cls", "equivariant_seg"])
def test_magnitude_on_models_keeps_running(name):
    model = build(name).eval()
    before = snapshot(model)
    out = prune(model, PruneConfig(amount=0.5))
    assert_unchanged(model, before)
    assert 0.45 < sparsity(out) < 0.55
    with torch.no_grad():
        assert torch.isfinite(out(batch(out))).all()


class _Toy(nn.Module):
    """Linear classifier of 32 features where only 4 matter (sparse ground truth)."""

    task = "classification"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        return self.net(x)

    def loss(self, out, x):
        return nn.functional.cross_entropy(out, (x[:, :4].sum(dim=1) > 0).long())


def test_ltp_learns_sparsity_and_keeps_accuracy():
    model = _Toy()
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(256, 32, generator=g) for _ in range(4)]
    before = snapshot(model)
    cfg = dict(method="ltp", steps=300, lr=1e-2, threshold_lr=5e-2, temperature=0.1)
    dense = prune(model, PruneConfig(**cfg, l0_weight=0.0), data)  # same training, no L0
    out = prune(model, PruneConfig(**cfg, l0_weight=2.0), data)
    assert_unchanged(model, before)
    assert not any("parametrizations" in k for k in out.state_dict())
    test = torch.randn(1024, 32, generator=g)
    target = (test[:, :4].sum(dim=1) > 0).long()
    acc = lambda m: float((m(test).argmax(dim=1) == target).float().mean())  # noqa: E731
    assert compression_ratio(out) > 4.0 > compression_ratio(dense)
    assert acc(out) > acc(dense) - 0.05 and acc(out) > 0.85
    # the inputs that matter keep their weights
    first = out.net[0].weight.detach()
    assert first[:, :4].ne(0).sum() > first[:, 4:8].ne(0).sum()


def test_finetune_keeps_the_mask_and_recovers_accuracy():
    model = _Toy()
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(256, 32, generator=g) for _ in range(4)]
    before = snapshot(model)
    cut = prune(model, PruneConfig(amount=0.6, scope="global"))
    tuned = prune(model, PruneConfig(amount=0.6, scope="global", finetune_steps=200, lr=1e-2), data)
    assert_unchanged(model, before)
    assert not any("parametrizations" in k for k in tuned.state_dict())
    for a, b in zip(cut.net, tuned.net):
        if isinstance(a, nn.Linear):  # the same weights are zero: the mask is fixed
            assert torch.equal(a.weight == 0, b.weight == 0)
    test = torch.randn(1024, 32, generator=g)
    target = (test[:, :4].sum(dim=1) > 0).long()
    loss = lambda m: float(nn.functional.cross_entropy(m(test), target))  # noqa: E731
    assert loss(tuned) < 0.5 * loss(cut)
    with pytest.raises(InvalidInputError, match="example"):
        prune(model, PruneConfig(finetune_steps=5), None)
    with pytest.raises(InvalidInputError, match="finetune_steps"):
        PruneConfig(method="structured", finetune_steps=5)


def test_ltp_runs_on_a_registered_model():
    model = build("dgcnn_seg")
    data = batch(model, n=64)
    out = prune(model, PruneConfig(method="ltp", steps=3), [data])
    assert 0 < compression_ratio(out) and torch.isfinite(out.eval()(data)).all()


def _masked_reference(original: nn.Module, pruned: nn.Module) -> nn.Module:
    """The original with every input column the pruned model dropped set to zero.

    A column survives when a pruned column holds only values of it (random weights).
    """
    ref = copy.deepcopy(original)
    pruned_mods = dict(pruned.named_modules())
    with torch.no_grad():
        for name, lin in ref.named_modules():
            kept = pruned_mods[name].weight if isinstance(lin, nn.Linear) else None
            if kept is None or kept.shape[1] == lin.weight.shape[1]:
                continue
            survivors = torch.tensor([any(bool(torch.isin(kept[:, j], lin.weight[:, c]).all())
                                          for j in range(kept.shape[1]))
                                      for c in range(lin.weight.shape[1])])
            assert int(survivors.sum()) == kept.shape[1]
            lin.weight[:, ~survivors] = 0
    return ref


@pytest.mark.parametrize("name,kwargs", [
    ("pointnet2_seg", {}),
    ("pointnet2_cls", {}),
    # k = cloud size: the dynamic graph is complete, so it does not depend on the features
    ("dgcnn_seg", dict(k=32)),
    ("dgcnn_cls", dict(k=32)),
])
def test_structured_equals_masking_dropped_inputs(name, kwargs):
    torch.manual_seed(1)
    model = build(name, **kwargs).eval()
    with torch.no_grad():  # BatchNorm statistics as after training, so ranking is non-trivial
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.uniform_(0.1, 2.0)
                m.running_var.uniform_(0.5, 2.0)
    before = snapshot(model)
    data = batch(model, n=32)
    out = prune(model, PruneConfig(method="structured", amount=0.5), data)
    assert_unchanged(model, before)
    n_old = sum(p.numel() for p in model.parameters())
    n_new = sum(p.numel() for p in out.parameters())
    assert n_new < 0.45 * n_old  # a smaller dense model
    ref = _masked_reference(model, out)
    with torch.no_grad():
        torch.testing.assert_close(out(data), ref(data), rtol=1e-4, atol=1e-5)


def test_structured_dgcnn_is_fewer_macs_and_trains():
    from geo3d.efficiency import count_macs

    model = build("dgcnn_seg")
    data = batch(model, n=64)
    out = prune(model, PruneConfig(method="structured", amount=0.5), data)
    assert count_macs(out, data) < 0.5 * count_macs(model, data)
    out.train()
    out.loss(out(data), data).backward()
    assert all(p.grad is not None for p in out.parameters())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_multiplicity_pruning_is_exactly_equivariant(dtype):
    model = build("equivariant_seg", width=8).to(dtype).eval()
    before = snapshot(model)
    out = prune(model, PruneConfig(method="structured", amount=0.5))
    assert_unchanged(model, before)
    data = cloud(48, 0, dtype)
    assert_equivariant(out.features, data, irreps_out=out.irreps_out)
    assert_equivariant(out, data)
    feats = out.features(data)
    # whole multiplicities are zero: every column of a pruned copy, in every row
    zero_cols = (feats == 0).all(dim=0)
    irreps = out.irreps_out
    n_zero_copies = 0
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        block = zero_cols[sl].view(mul, ir.dim)
        assert ((block.all(dim=1)) | (~block.any(dim=1))).all()  # all or none of a copy
        n_zero_copies += int(block.all(dim=1).sum())
    assert n_zero_copies >= sum(mul - max(1, round(mul / 2)) for mul, _ in irreps)
    assert out.backbone.layers[0].lin_out.weight.eq(0).any()


def test_structured_unknown_model_and_bad_config():
    with pytest.raises(InvalidInputError, match="structured pruning"):
        prune(_two_layers(), PruneConfig(method="structured"))
    with pytest.raises(InvalidInputError, match="method"):
        PruneConfig(method="random")
    with pytest.raises(InvalidInputError, match="amount"):
        PruneConfig(amount=1.0)
    with pytest.raises(InvalidInputError, match="scope"):
        PruneConfig(scope="net")
    with pytest.raises(InvalidInputError, match="steps"):
        PruneConfig(steps=0)
    with pytest.raises(InvalidInputError, match="config"):
        prune(_two_layers(), {"method": "magnitude"})
    with pytest.raises(InvalidInputError, match="loss"):
        prune(_two_layers(), PruneConfig(method="ltp"), torch.randn(4, 6))
    with pytest.raises(InvalidInputError, match="example"):
        prune(build("dgcnn_seg"), PruneConfig(method="ltp"), None)
