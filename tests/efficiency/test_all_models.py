"""Every registered model goes through every transform, or is refused with InvalidInputError."""

from __future__ import annotations

import pytest
import torch

from geo3d.efficiency import (PruneConfig, QuantConfig, count_macs, profile, prune, quantize)
from geo3d.errors import InvalidInputError
from geo3d.models import list_models

from tests.efficiency._models import assert_unchanged, snapshot
from tests.models.test_registry import _batch, _build, _cloud, _labels


def _model_and_input(name):
    """The registry contract test's small model and inputs (meshes, boxes, joints included)."""
    model = _build(name)
    return model, _labels(model, _batch([_cloud(96, seed, 2, name=name) for seed in range(2)]))


def _applies_or_refuses(fn):
    try:
        return fn()
    except InvalidInputError as exc:
        assert str(exc)  # a clear message, no crash
        return None


def _assert_finite(outputs):
    """Every floating tensor of the outputs (a tensor or a dict/list of them) is finite."""
    leaves = [t for t in torch.utils._pytree.tree_leaves(outputs) if isinstance(t, torch.Tensor)]
    assert leaves
    for t in leaves:
        assert not t.is_floating_point() or torch.isfinite(t).all()


@pytest.mark.parametrize("name", list_models())
def test_every_transform_applies_or_refuses(name):
    model, data = _model_and_input(name)
    before = snapshot(model)
    p = profile(model, data, repeats=1, memory=False)
    assert p.macs == count_macs(model, data) > 0 and p.params >= p.nonzero_params > 0
    results = [
        prune(model, PruneConfig(method="magnitude", amount=0.5), data),
        _applies_or_refuses(lambda: prune(model, PruneConfig(method="structured"), data)),
        _applies_or_refuses(lambda: prune(model, PruneConfig(method="ltp", steps=1), [data])),
        _applies_or_refuses(lambda: quantize(model, QuantConfig(method="qat_lsq", bits=4, steps=1), [data])),
    ]
    assert results[0] is not None
    assert_unchanged(model, before)
    for out in results:
        if out is not None:
            assert out is not model
            with torch.no_grad():
                y = out.eval()(data)
            _assert_finite(y)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_model_ptq_int8_applies_or_refuses(name):
    model, data = _model_and_input(name)
    before = snapshot(model)
    out = _applies_or_refuses(lambda: quantize(model.eval(), QuantConfig(compile=False), [data]))
    assert_unchanged(model, before)
    if out is not None:
        with torch.no_grad():
            _assert_finite(out(data))
