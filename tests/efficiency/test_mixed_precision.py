"""Mixed precision: per-layer sensitivity, the greedy bit choice, layer_bits / target_bits in quantize."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from geo3d.efficiency import QuantConfig, choose_bits, quantize, sensitivity
from geo3d.efficiency.mixed_precision import mean_bits
from geo3d.efficiency.quantize import LSQQuantizer
from geo3d.errors import InvalidInputError

from tests.efficiency._models import assert_unchanged, batch, build, snapshot


class _Toy(nn.Module):
    """``big(x) + 1e-3 small(x)``: ``big`` has large weights and feeds the output directly,
    so its quantization noise reaches the loss ~1e4 times more than ``small``'s."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.big = nn.Linear(16, 8)
        self.small = nn.Linear(16, 8)
        with torch.no_grad():
            self.big.weight.mul_(10)

    def forward(self, data: Data) -> torch.Tensor:
        return self.big(data.x) + 1e-3 * self.small(data.x)

    def loss(self, out: torch.Tensor, data: Data) -> torch.Tensor:
        return F.mse_loss(out, data.y)


def _toy_data(model: nn.Module, seeds=(0, 1)) -> list:
    """Inputs whose targets are the float model's outputs: the float loss is 0."""
    out = []
    for seed in seeds:
        x = torch.randn(64, 16, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            out.append(Data(x=x, y=model(Data(x=x))))
    return out


def _distinct(w: torch.Tensor) -> int:
    return len(torch.unique(w.detach()))


def test_sensitivity_matches_manual_fake_quantization():
    model = _Toy()
    data = _toy_data(model)
    before = snapshot(model)
    sens = sensitivity(model, data)
    assert_unchanged(model, before)
    assert list(sens) == ["big", "small"] and all(set(v) == {8, 4, 2} for v in sens.values())
    # independent reference: quantize big's weight and input by hand (input range of batch 0)
    for bits in (8, 4, 2):
        wq, xq = LSQQuantizer(bits, signed=True), LSQQuantizer(bits, signed=False)
        with torch.no_grad():
            w = wq(model.big.weight)
            losses = [F.mse_loss(F.linear(xq(d.x), w, model.big.bias) + 1e-3 * model.small(d.x), d.y)
                      for d in data]
        assert sens["big"][bits] == pytest.approx(float(sum(losses) / len(losses)), rel=1e-5)
    assert sens["big"][2] > sens["big"][4] > sens["big"][8] > 0
    assert all(sens["big"][b] > 1000 * sens["small"][b] for b in (8, 4, 2))


def test_choose_bits_hand_computed():
    sens = {"a": {8: 0.0, 4: 1.0, 2: 10.0}, "b": {8: 0.0, 4: 0.1, 2: 0.2}}
    params = {"a": 100, "b": 100}
    # b 8->4 (0.1/400 < 1/400), b 4->2 (0.1/200 < 1/400): mean 5 > 4; then a 8->4: mean 3
    assert choose_bits(sens, params, 4) == {"a": 4, "b": 2}
    assert choose_bits(sens, params, 5) == {"a": 8, "b": 2}
    assert choose_bits(sens, params, 8) == {"a": 8, "b": 8}
    assert choose_bits(sens, params, 2) == {"a": 2, "b": 2}
    # parameter weighting: b alone cannot bring a 1000-weight layer a to mean 7
    heavy = {"a": 1000, "b": 10}
    got = choose_bits(sens, heavy, 7)
    assert got["a"] == 4 and mean_bits(got, heavy) <= 7
    with pytest.raises(InvalidInputError, match="unreachable"):
        choose_bits(sens, params, 1.5)
    with pytest.raises(InvalidInputError, match="missing \\['b'\\]"):
        choose_bits(sens, {"a": 100}, 4)
    with pytest.raises(InvalidInputError, match="same"):
        choose_bits({"a": {8: 0.0, 4: 1.0}, "b": {8: 0.0, 2: 1.0}}, params, 6)
    with pytest.raises(InvalidInputError, match="finite"):
        choose_bits({"a": {8: 0.0, 4: float("nan")}}, {"a": 1}, 6)


def test_target_bits_gives_the_sensitive_layer_more_bits():
    model = _Toy()
    data = _toy_data(model)
    before = snapshot(model)
    q = quantize(model, QuantConfig(method="qat_lsq", target_bits=5, steps=2), data)
    assert_unchanged(model, before)
    report = q.quant_report
    assert report.layer_bits == {"big": 8, "small": 2}
    assert report.sensitivity is not None and set(report.sensitivity) == {"big", "small"}
    assert _distinct(q.small.weight) <= 4 < _distinct(q.big.weight)


def test_target_bits_on_a_registry_model_meets_the_target():
    model = build("dgcnn_seg")
    data = [batch(model, n=48, seed=s) for s in range(2)]
    before = snapshot(model)
    q = quantize(model, QuantConfig(method="qat_lsq", target_bits=4, steps=1, calibration_batches=1), data)
    assert_unchanged(model, before)
    bits = q.quant_report.layer_bits
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert set(bits) == set(linears) and set(bits.values()) <= {2, 4, 8}
    assert mean_bits(bits, {n: m.weight.numel() for n, m in linears.items()}) <= 4
    for name, b in bits.items():
        assert _distinct(q.get_submodule(name).weight) <= 2**b


def test_layer_bits_are_applied():
    model = build("dgcnn_seg")
    data = [batch(model, n=48, seed=s) for s in range(2)]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    q = quantize(model, QuantConfig(method="qat_lsq", bits=8, layer_bits={names[0]: 2, names[1]: 4},
                                    steps=1), data)
    bits = q.quant_report.layer_bits
    assert bits[names[0]] == 2 and bits[names[1]] == 4
    assert all(bits[n] == 8 for n in names[2:])
    assert _distinct(q.get_submodule(names[0]).weight) <= 4
    assert _distinct(q.get_submodule(names[1]).weight) <= 16
    assert _distinct(q.get_submodule(names[2]).weight) > 16  # 8 bits: many more levels
    q.eval()
    with torch.no_grad():
        assert torch.isfinite(q(data[0])).all()


def test_bad_mixed_precision_configs():
    with pytest.raises(InvalidInputError, match="layer_bits"):
        QuantConfig(method="qat_lsq", layer_bits={"a": 3})
    with pytest.raises(InvalidInputError, match="layer_bits"):
        QuantConfig(method="qat_lsq", layer_bits={})
    with pytest.raises(InvalidInputError, match="layer_bits"):
        QuantConfig(method="qat_lsq", layer_bits=[("a", 4)])
    with pytest.raises(InvalidInputError, match="qat_lsq"):
        QuantConfig(method="ptq_int8", layer_bits={"a": 4})
    with pytest.raises(InvalidInputError, match="not both"):
        QuantConfig(method="qat_lsq", layer_bits={"a": 4}, target_bits=4)
    for bad in (1.5, 9, float("nan"), float("inf"), True, "4"):
        with pytest.raises(InvalidInputError, match="target_bits"):
            QuantConfig(method="qat_lsq", target_bits=bad)
    given = {"big": 4}
    config = QuantConfig(method="qat_lsq", layer_bits=given)
    given["big"] = 2  # the config keeps its own copy
    assert config.layer_bits == {"big": 4}
    model = _Toy()
    with pytest.raises(InvalidInputError, match="'nope'.*big"):
        quantize(model, QuantConfig(method="qat_lsq", layer_bits={"big": 4, "nope": 2}), _toy_data(model))
    with pytest.raises(InvalidInputError, match="bits"):
        sensitivity(model, _toy_data(model), bits=(8, 1))
    with pytest.raises(InvalidInputError, match="batches is empty"):
        sensitivity(model, [])
    with pytest.raises(InvalidInputError, match="loss"):
        sensitivity(nn.Linear(3, 3), torch.randn(4, 3))
