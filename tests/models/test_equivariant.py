"""Tests of the E(3)-equivariant network (geo3d.models.backbones.equivariant)."""

import functools

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

from geo3d.errors import InvalidInputError
from geo3d.models import create, list_models
from geo3d.models.backbones.equivariant import (
    EquivariantBackbone,
    equivariant_cls,
    equivariant_seg,
    hidden_irreps,
)
from geo3d.testing import assert_equivariant, random_orthogonal

SMALL = dict(width=4, depth=2, radius=0.3, num_basis=6, radial_hidden=16, head_hidden=16)
DTYPES = [torch.float32, torch.float64]


def _cloud(n=100, seed=0, dtype=torch.float32, channels=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, 3, generator=g, dtype=torch.float64).to(dtype)
    x = torch.randn(n, channels, generator=g, dtype=torch.float64).to(dtype) if channels else None
    return Data(pos=pos, x=x)


def _model(factory, dtype, lmax=2):
    """A cached model (in_channels=2) converted in place to ``dtype``.

    Building (or deep-copying) e3nn modules costs ~1 s of code generation, so the tests
    share one model per (factory, lmax); none of them changes its weights.
    """
    return _build(factory, lmax).to(dtype).eval()


@functools.lru_cache(maxsize=None)
def _build(factory, lmax):
    torch.manual_seed(0)
    return factory(num_classes=5, in_channels=2, lmax=lmax, **SMALL)


@pytest.mark.parametrize("lmax", [1, 2, 3])
@pytest.mark.parametrize("factory", [equivariant_cls, equivariant_seg])
def test_logits_are_invariant_under_o3_and_translation(factory, lmax):
    for dtype in DTYPES:  # one model per lmax, converted: float32 then float64
        model = _model(factory, dtype, lmax)
        data = _cloud(dtype=dtype, channels=2)
        with torch.no_grad():
            assert model(data).dtype == dtype
            assert_equivariant(model, data, trials=2)  # 1e-4 (float32) / 1e-9 (float64)


@pytest.mark.parametrize("lmax", [1, 2, 3])
def test_features_are_equivariant(lmax):
    for dtype in DTYPES:
        model = _model(equivariant_seg, dtype, lmax)
        assert model.irreps_out == hidden_irreps(4, lmax)
        data = _cloud(dtype=dtype, channels=2)
        with torch.no_grad():
            assert_equivariant(model.features, data, irreps_out=model.irreps_out, trials=2)


def _columns(irreps, ir):
    pairs = zip(irreps, irreps.slices())
    return torch.cat([torch.arange(s.start, s.stop) for (_, i), s in pairs if i == o3.Irrep(ir)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_features_rotate_like_positions(dtype):
    """Independent of e3nn's D matrices: the 1o channels must transform exactly as R v."""
    model = _model(equivariant_seg, dtype)
    cols, pseudo = _columns(model.irreps_out, "1o"), _columns(model.irreps_out, "1e")
    data = _cloud(dtype=dtype, channels=2)
    rot = random_orthogonal(torch.Generator().manual_seed(3), det=-1)
    moved = Data(pos=(data.pos.double() @ rot.T + 0.5).to(dtype), x=data.x)
    with torch.no_grad():
        f, g = model.features(data).double(), model.features(moved).double()
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    scale = 1 + f.abs().max()
    vec, vec_moved = f[:, cols].reshape(len(f), -1, 3), g[:, cols].reshape(len(f), -1, 3)
    assert (vec_moved - vec @ rot.T).abs().max() <= tol * scale
    assert vec.abs().max() > 1e-3  # the check is not vacuous
    # pseudo-vectors (1e) do not flip sign under the reflection
    pv, pv_moved = f[:, pseudo].reshape(len(f), -1, 3), g[:, pseudo].reshape(len(f), -1, 3)
    assert (pv_moved + pv @ rot.T).abs().max() <= tol * scale


def test_float64_exactness_survives_state_dict_round_trip():
    model32 = _model(equivariant_seg, torch.float32, 3)
    torch.manual_seed(1)
    model64 = equivariant_seg(num_classes=5, in_channels=2, lmax=3, **SMALL).double()
    model64.load_state_dict(model32.state_dict())  # float32 e3nn constants are refreshed
    data = _cloud(dtype=torch.float64, channels=2)
    with torch.no_grad():
        assert_equivariant(model64.features, data, irreps_out=model64.irreps_out, trials=1)
        ref = model32(_cloud(channels=2))
        assert torch.allclose(model64(data).float(), ref, atol=1e-4, rtol=1e-4)


def test_segmentation_is_permutation_equivariant():
    model = _model(equivariant_seg, torch.float64)
    data = _cloud(dtype=torch.float64, channels=2)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(data)
        out_perm = model(Data(pos=data.pos[perm], x=data.x[perm]))
    assert out.shape == (100, 5)
    torch.testing.assert_close(out_perm, out[perm], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("factory", [equivariant_cls, equivariant_seg])
def test_batch_items_are_independent(factory):
    model = _model(factory, torch.float64)
    a, b, c = (_cloud(n, s, torch.float64, channels=2) for n, s in [(80, 1), (60, 2), (60, 3)])
    with torch.no_grad():
        ab, ac = model(Batch.from_data_list([a, b])), model(Batch.from_data_list([a, c]))
        alone = [model(a), model(b)]
    expected = torch.cat(alone)
    assert ab.shape == ((2, 5) if model.task == "classification" else (140, 5))
    torch.testing.assert_close(ab, expected, atol=1e-10, rtol=1e-10)
    n = 1 if model.task == "classification" else 80
    torch.testing.assert_close(ac[:n], ab[:n], atol=1e-10, rtol=1e-10)  # c does not leak into a
    assert not torch.allclose(ac[n:], ab[n:])


@pytest.mark.parametrize("factory", [equivariant_cls, equivariant_seg])
def test_loss_backward_reaches_every_parameter(factory):
    model = _model(factory, torch.float32).train()
    model.zero_grad(set_to_none=True)
    batch = Batch.from_data_list([_cloud(50, 1, channels=2), _cloud(40, 2, channels=2)])
    if model.task == "classification":
        batch.y = torch.tensor([1, 3])
    else:
        batch.y = torch.randint(-1, 5, (90,), generator=torch.Generator().manual_seed(0))
    batch.pos.requires_grad_(True)
    loss = model.loss(model(batch), batch)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(batch.pos.grad).all() and batch.pos.grad.abs().sum() > 0


def test_coincident_points_and_isolated_points_are_finite():
    model = _model(equivariant_seg, torch.float32)
    pos = torch.rand(30, 3)
    pos[1] = pos[0]  # zero-length edge
    pos[2] = torch.tensor([10.0, 10.0, 10.0])  # no neighbour within the radius
    pos.requires_grad_(True)
    out = model(Data(pos=pos, x=torch.rand(30, 2)))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(pos.grad).all()


def test_loss_ignores_minus_one():
    model = _model(equivariant_seg, torch.float32)
    data = _cloud(20, channels=2)
    with torch.no_grad():
        logits = model(data)
    data.y = torch.full((20,), -1)
    assert model.loss(logits, data).item() == 0.0
    data.y[:5] = 2
    expected = torch.nn.functional.cross_entropy(logits[:5], data.y[:5])
    torch.testing.assert_close(model.loss(logits, data), expected)


def test_registry_builds_both_models():
    assert {"equivariant_cls", "equivariant_seg"} <= set(list_models())
    cls = create("equivariant_cls", num_classes=3, in_channels=1, lmax=1, width=4, depth=1)
    seg = create("equivariant_seg", num_classes=4, lmax=1, width=4, depth=1)
    assert cls.task == "classification" and seg.task == "segmentation"
    data = Data(pos=torch.rand(40, 3), x=torch.rand(40, 1))
    assert cls(data).shape == (1, 3) and seg(data).shape == (40, 4)
    with pytest.raises(InvalidInputError, match="unknown keyword"):
        create("equivariant_seg", num_classes=4, k=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lmax=-1), "lmax"),
        (dict(width=0), "width"),
        (dict(depth=0), "depth"),
        (dict(radius=0.0), "radius"),
        (dict(radius=float("nan")), "radius"),
        (dict(num_basis=1), "num_basis"),
        (dict(max_num_neighbors=0), "max_num_neighbors"),
        (dict(in_channels=-1), "in_channels"),
        (dict(num_classes=0), "num_classes"),
        (dict(width=2.5), "width"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        equivariant_seg(**{"num_classes": 3, **kwargs})


def test_bad_input_is_rejected_with_a_named_argument():
    model = _model(equivariant_seg, torch.float32)
    good = _cloud(20, channels=2)
    cases = [
        (Data(x=good.x), "data.pos is missing"),
        (Data(pos=good.pos[:, :2], x=good.x), "data.pos"),
        (Data(pos=torch.full((20, 3), float("nan")), x=good.x), "NaN"),
        (Data(pos=good.pos.double(), x=good.x), "dtype"),
        (Data(pos=torch.zeros(0, 3), x=torch.zeros(0, 2)), "empty"),
        (Data(pos=good.pos), "data.x is missing"),
        (Data(pos=good.pos, x=good.x[:, :1]), "data.x"),
        (Data(pos=good.pos, x=good.x[:10]), "data.x"),
        (Data(pos=good.pos, x=good.x, batch=torch.arange(20).flip(0)), "data.batch"),
        (good.pos, "Data"),
    ]
    for data, match in cases:
        with pytest.raises(InvalidInputError, match=match):
            model(data)
    logits = model(good)
    with pytest.raises(InvalidInputError, match="data.y is missing"):
        model.loss(logits, good)
    bad_labels = [
        (torch.zeros(3, dtype=torch.long), "one label"),
        (torch.full((20,), 7), "data.y"),
        (torch.zeros(20), "integer"),
    ]
    for y, match in bad_labels:
        with pytest.raises(InvalidInputError, match=match):
            model.loss(logits, Data(pos=good.pos, y=y))


def test_backbone_ignores_x_when_in_channels_is_zero():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(width=4, depth=1, radius=0.3)
    data = _cloud(30, channels=3)
    torch.testing.assert_close(backbone(data), backbone(Data(pos=data.pos)))
