"""Conditional compute: slimmable budgets, the budget controller, early exit, routing."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from geo3d.efficiency import (BudgetController, ConditionalConfig, EarlyExitModel, Router,
                              SlimmableModel, conditional, count_macs)
from geo3d.efficiency.early_exit import confidence, entropy
from geo3d.efficiency.slimmable import SwitchableBatchNorm1d, active_width
from geo3d.errors import InvalidInputError
from geo3d.models import list_models
from geo3d.tasks import TrainConfig, train

from ._models import assert_unchanged, batch, build, cloud, snapshot

SLIM = ["dgcnn_cls", "dgcnn_seg", "pointnet2_cls", "pointnet2_seg"]
TRAIN = TrainConfig(epochs=1, batch_size=2, lr=1e-2, progress=False, tensorboard=False, device="cpu")


def _labelled(task: str, n: int = 4, points: int = 96) -> list:
    items = [cloud(points, 100 + i) for i in range(n)]
    if task == "classification":
        for i, d in enumerate(items):
            d.y = torch.tensor([i % 3])
    return items


# --------------------------------------------------------------------------- budget


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", SLIM)
def test_full_budget_is_the_model_and_input_untouched(name, dtype):
    model = build(name).to(dtype).eval()
    before = snapshot(model)
    b = batch(model)
    b.pos, b.x = b.pos.to(dtype), b.x.to(dtype)
    slim = conditional(model, ConditionalConfig(method="budget")).eval()
    assert isinstance(slim, SlimmableModel) and slim.task == model.task
    torch.testing.assert_close(slim(b), model(b), rtol=0, atol=0)
    for budget in (0.25, 0.4, 0.5, 0.75):
        out = slim.set_budget(budget)(b)
        assert out.shape == model(b).shape and bool(torch.isfinite(out).all())
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", SLIM)
def test_quarter_budget_has_3x_fewer_macs(name):
    torch.manual_seed(0)
    from geo3d.models import create
    defaults = {"dgcnn_cls": dict(k=16), "dgcnn_seg": dict(k=16),
                "pointnet2_seg": dict(ratios=(0.25, 0.25), radii=(0.4, 0.8))}
    model = create(name, in_channels=2, num_classes=3, **defaults.get(name, {})).eval()
    b = batch(model, n=256, graphs=1)
    slim = conditional(model, ConditionalConfig()).eval()
    macs = {bud: count_macs(slim.set_budget(bud), b) for bud in (1.0, 0.75, 0.5, 0.25)}
    assert macs[1.0] == count_macs(model, b)
    assert macs[1.0] > macs[0.75] > macs[0.5] > macs[0.25]
    assert macs[1.0] / macs[0.25] >= 3.0, macs


def test_active_weights_are_the_leading_blocks():
    model = build("dgcnn_cls")
    slim = conditional(model, ConditionalConfig())
    slim.set_budget(0.5)
    conv, full = slim.net.backbone.convs[1], model.backbone.convs[1]
    c_in, c_out = full.in_channels, full.first.out_features
    a_in, a_out = active_width(c_in, 0.5), active_width(c_out, 0.5)
    assert conv.in_channels == a_in
    w = full.first.weight  # EdgeConv's split input [x_i | x_j - x_i]: both halves slim
    expect = torch.cat([w[:a_out, :a_in], w[:a_out, c_in:c_in + a_in]], dim=1)
    torch.testing.assert_close(conv.first.weight, expect, rtol=0, atol=0)
    # the logits layer keeps every class
    assert slim.net.head.mlp[-1].weight.shape[0] == 3


def test_budget_errors_and_unsupported_models():
    slim = conditional(build("pointnet2_cls"), ConditionalConfig())
    for bad in (0.2, 1.5, float("nan"), True, "half"):
        with pytest.raises(InvalidInputError, match="budget"):
            slim.set_budget(bad)
    with pytest.raises(InvalidInputError, match="budgets"):
        ConditionalConfig(budgets=(0.1, 1.0))
    with pytest.raises(InvalidInputError, match="method"):
        ConditionalConfig(method="fast")
    with pytest.raises(InvalidInputError, match="equivariant"):
        conditional(build("equivariant_cls"), ConditionalConfig())
    with pytest.raises(InvalidInputError, match="already"):
        conditional(slim.net, ConditionalConfig())
    with pytest.raises(InvalidInputError, match="large"):
        conditional(build("dgcnn_cls"), ConditionalConfig(), large=build("dgcnn_cls"))


def test_sandwich_training_with_tasks_train_and_state_dict():
    model = build("dgcnn_seg")
    slim = conditional(model, ConditionalConfig(sandwich_samples=1))
    bns = [m for m in slim.modules() if isinstance(m, SwitchableBatchNorm1d)]
    before = torch.stack([bn.running_mean.clone() for bn in bns[:1]])[0]
    result = train(slim, _labelled("segmentation"), TRAIN)
    assert result.steps == 2 and all(math.isfinite(r["loss"]) for r in result.history
                                     if r["split"] == "train")
    after = bns[0].running_mean
    # the smallest (slot 0) and largest (slot 3) budgets updated their statistics, the
    # random middle ones (off the grid) did not touch slots 1 and 2
    assert not torch.equal(after[0], before[0]) and not torch.equal(after[3], before[3])
    assert torch.equal(after[1], before[1]) and torch.equal(after[2], before[2])
    # a fresh slimmable copy of the same architecture loads the trained state
    other = conditional(model, ConditionalConfig(sandwich_samples=1))
    other.load_state_dict(slim.state_dict())
    b = batch(model)
    slim.eval().set_budget(0.5)
    other.eval().set_budget(0.5)
    torch.testing.assert_close(other(b), slim(b))
    slim.set_budget(0.3)  # off the grid: the statistics of the nearest budget, 0.25
    assert bns[0].slot is None and bns[0].eval_slot == 0
    slim.set_budget(0.5)
    ref = slim(b)
    clone = copy.deepcopy(slim).set_budget(0.25)  # a copy has its own budget and layers
    assert slim.budget == 0.5 and clone(b).shape == ref.shape
    torch.testing.assert_close(slim(b), ref, rtol=0, atol=0)


# --------------------------------------------------------------------------- controller


class _FakeModel:
    """Latency 40 ms * b^2 * slowdown, on a fake clock."""

    def __init__(self, clock):
        self.clock, self.budget, self.slowdown = clock, 1.0, 1.0

    def set_budget(self, b):
        self.budget = b

    def __call__(self, frame):
        self.clock.now += 0.040 * self.budget**2 * self.slowdown
        return frame


class _Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_budget_controller_follows_latency_and_speed():
    clock = _Clock()
    model = _FakeModel(clock)
    ctrl = BudgetController(30.0, max_travel_m=0.5, clock=clock, smoothing=1.0)
    picks = [ctrl.step(model, i)[1] for i in range(4)]
    assert picks[0] == 0.25  # nothing measured yet: the safe choice
    assert picks[-1] == 0.75  # 40 * 0.75^2 = 22.5 ms <= 0.9 * 30; 1.0 would be 40 ms
    assert ctrl.target_ms(25.0) == pytest.approx(20.0)  # 0.5 m at 25 m/s
    assert ctrl.step(model, 0, speed_mps=25.0)[1] == 0.5  # 10 ms <= 18 < 22.5
    model.slowdown = 4.0  # the machine gets busy: 0.5 now costs 40 ms
    ctrl.step(model, 0)
    out, b, ms = ctrl.step(model, 0)
    assert b == 0.25 and ms == pytest.approx(40 * 0.0625 * 4)
    assert [h[0] for h in ctrl.history][:2] == [0.25, 0.75]
    with pytest.raises(InvalidInputError, match="latency_target_ms"):
        BudgetController(0.0)
    with pytest.raises(InvalidInputError, match="relative_cost"):
        BudgetController(10.0, budgets=(0.5, 1.0), relative_cost={0.5: 1.0})
    with pytest.raises(InvalidInputError, match="set_budget"):
        ctrl.step(torch.nn.Identity(), 0)


# --------------------------------------------------------------------------- early exit


@pytest.mark.parametrize("name", ["dgcnn_cls", "pointnet2_cls"])
def test_early_exit_matches_model_and_exits(name):
    model = build(name).eval()
    before = snapshot(model)
    b = batch(model, graphs=4)
    ee = conditional(model, ConditionalConfig(method="early_exit", threshold=1.0)).eval()
    assert isinstance(ee, EarlyExitModel)
    torch.testing.assert_close(ee(b), model(b), rtol=0, atol=0)
    assert ee.exit_rates() == [0.0, 0.0, 1.0]
    full_macs = count_macs(model, b)
    # every exit's logits on the whole batch, as the reference of each sample's exit
    ee.train()
    all_exits = ee(b)
    ee.eval()
    first = confidence(all_exits[0])
    ee.threshold = float(first.detach().sort().values[1])  # the two most confident leave first
    ee.reset_exit_stats()
    out = ee(b)
    left = first >= ee.threshold
    assert 0 < int(left.sum()) < 4
    torch.testing.assert_close(out[left], all_exits[0][left])
    stay = ~left & (confidence(all_exits[1]) < ee.threshold)
    torch.testing.assert_close(out[stay], model(b)[stay])
    assert ee.exit_rates()[0] == int(left.sum()) / 4
    assert count_macs(ee, b) < full_macs
    ee.threshold = 0.0
    ee.reset_exit_stats()
    assert count_macs(ee, b) < full_macs and ee.exit_rates()[0] == 1.0
    assert_unchanged(model, before)


def test_early_exit_entropy_training_and_errors():
    model = build("dgcnn_cls")
    ee = conditional(model, ConditionalConfig(method="early_exit", criterion="entropy",
                                              threshold=0.0))
    backbone = snapshot(ee.net)
    heads = snapshot(ee.exits)
    train(ee, _labelled("classification"), TRAIN)
    assert_unchanged(ee.net, backbone)  # frozen: BatchNorm statistics included
    assert any(not torch.equal(v, heads[k]) for k, v in ee.exits.state_dict().items())
    ee.eval()
    b = batch(model, graphs=3)
    ee.threshold = float(entropy(model.eval()(b)).detach().max()) + 10  # everyone trusts the first exit
    ee.reset_exit_stats()
    ee(b)
    assert ee.exit_rates()[0] == 1.0
    for name in ("dgcnn_seg", "equivariant_cls"):
        with pytest.raises(InvalidInputError, match="early exit needs"):
            conditional(build(name), ConditionalConfig(method="early_exit"))


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("name", ["dgcnn_cls", "pointnet2_seg"])
def test_routing_coverage_outputs_and_cost(name):
    small, large = build(name).eval(), build(name, width=16).eval()
    before = snapshot(small)
    b = batch(small, graphs=4)
    ref_small, ref_large = small(b).detach(), large(b).detach()
    router = conditional(small, ConditionalConfig(method="routing", threshold=0.0), large=large).eval()
    assert isinstance(router, Router)
    torch.testing.assert_close(router(b), ref_small, rtol=0, atol=0)
    assert router.coverage() == 1.0
    # the small model, plus one add per point for the per-cloud mean confidence
    assert count_macs(small, b) <= count_macs(router, b) <= count_macs(small, b) + b.num_nodes
    score = confidence(ref_small)
    per = score if small.task == "classification" else torch.stack(
        [score[b.batch == g].mean() for g in range(4)])
    router.threshold = float(per.sort().values[2])  # two samples are trusted
    router.reset_stats()
    out = router(b)
    trusted = per >= router.threshold
    rows = trusted if small.task == "classification" else trusted[b.batch]
    assert router.coverage() == pytest.approx(int(trusted.sum()) / 4)
    torch.testing.assert_close(out[rows], ref_small[rows])
    torch.testing.assert_close(out[~rows], ref_large[~rows], rtol=1e-4, atol=1e-5)
    macs = count_macs(router, b)
    assert count_macs(small, b) < macs < count_macs(small, b) + count_macs(large, b)
    assert_unchanged(small, before)


def test_routing_errors():
    with pytest.raises(InvalidInputError, match="both"):
        Router(build("dgcnn_cls"), build("dgcnn_seg"))
    with pytest.raises(InvalidInputError, match="large"):
        conditional(build("dgcnn_cls"), ConditionalConfig(method="routing"))
    with pytest.raises(InvalidInputError, match="threshold"):
        ConditionalConfig(method="routing", threshold=1.5)


# --------------------------------------------------------------------------- every model


def _any(name: str):
    from geo3d.models import create

    try:
        return build(name)
    except InvalidInputError:  # a model without in_channels / num_classes
        torch.manual_seed(0)
        return create(name)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_is_transformed_or_refused(name):
    model = _any(name)
    for config in (ConditionalConfig(method="budget"), ConditionalConfig(method="early_exit")):
        supported = name in SLIM if config.method == "budget" else name in ("dgcnn_cls", "pointnet2_cls")
        if supported:
            assert conditional(model, config).task == model.task
        else:
            with pytest.raises(InvalidInputError):
                conditional(model, config)
    routing = ConditionalConfig(method="routing")
    if name.startswith("equivariant"):
        return  # routing works on them, but deep-copying two e3nn models takes ~10 s here
    if model.task in ("classification", "segmentation"):
        assert conditional(model, routing, large=model).task == model.task
    else:
        with pytest.raises(InvalidInputError, match="classification"):
            conditional(model, routing, large=model)
