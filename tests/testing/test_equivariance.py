"""Tests of geo3d.testing.assert_equivariant and its representation matrices."""

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

from geo3d.errors import InvalidInputError
from geo3d.models.backbones.equivariant import equivariant_seg
from geo3d.testing import assert_equivariant, random_orthogonal, wigner_d_from_matrix

DTYPES = [torch.float32, torch.float64]


def _cloud(n=40, dtype=torch.float32, seed=0, x=None):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64).to(dtype)
    return Data(pos=pos, x=x)


def _centred(d):
    return d.pos - d.pos.mean(0)


def _gyration(d):  # invariant: sorted distances to the centroid
    return _centred(d).norm(dim=1).sort().values


def _cross(d):  # a pseudo-vector (1e): cross product of two polar vectors
    c = _centred(d)
    return torch.cross(c, c[:1].expand_as(c) * 2 + c.roll(1, 0), dim=1)


@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("det", [1, -1])
def test_wigner_d_matches_e3nn(det, float64_default):
    """Reference: e3nn's own D_from_matrix, exact when float64 is the default dtype."""
    irreps = o3.Irreps("2x0e+0o+1o+1e+2e+2o+3o+3e+4e")
    rot = random_orthogonal(torch.Generator().manual_seed(det + 5), det)
    ours = wigner_d_from_matrix(irreps, rot)
    torch.testing.assert_close(ours, irreps.D_from_matrix(rot), atol=1e-12, rtol=0)
    torch.testing.assert_close(ours @ ours.T, torch.eye(irreps.dim), atol=1e-12, rtol=0)
    torch.testing.assert_close(wigner_d_from_matrix("1o", rot), rot, atol=1e-13, rtol=0)


def test_random_orthogonal():
    g = torch.Generator().manual_seed(0)
    for det in (1, -1):
        q = random_orthogonal(g, det)
        torch.testing.assert_close(q @ q.T, torch.eye(3, dtype=torch.float64), atol=1e-14, rtol=0)
        assert torch.det(q).item() == pytest.approx(det)


@pytest.mark.parametrize("dtype", DTYPES)
def test_passes_on_invariant_and_equivariant_functions(dtype):
    data = _cloud(dtype=dtype)
    assert assert_equivariant(_gyration, data) < (1e-5 if dtype == torch.float32 else 1e-12)
    assert_equivariant(_centred, data, irreps_out="1o")
    assert_equivariant(_cross, data, irreps_out="1e")
    # the outer product of a vector with itself is 0e + 2e (trace and traceless part)
    def outer(d):
        return o3.spherical_harmonics([0, 2], _centred(d), False)

    assert_equivariant(outer, data, irreps_out="0e+2e")
    batch = Batch.from_data_list([data, _cloud(10, dtype, 1)])
    assert_equivariant(_centred, batch, irreps_out="1o")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fails_on_non_equivariant_functions(dtype):
    data = _cloud(dtype=dtype)
    with pytest.raises(AssertionError, match="not invariant"):
        assert_equivariant(lambda d: d.pos[:, 0], data)
    with pytest.raises(AssertionError, match=r"reflection, det -1.*max abs error"):
        assert_equivariant(_cross, data, irreps_out="1o", trials=1)  # pseudo-vector as 1o
    assert_equivariant(_cross, data, irreps_out="1o", group="SO3")  # fine without reflections
    with pytest.raises(AssertionError, match="not equivariant as 1x1o"):
        assert_equivariant(lambda d: d.pos, data, irreps_out="1o")  # not translation-invariant
    assert_equivariant(lambda d: d.pos, data, irreps_out="1o", translate=False)


def test_tolerance_depends_on_dtype():
    def almost(d):  # breaks invariance by ~1e-6
        return _gyration(d) + 1e-6 * d.pos[:, 0].sort().values

    assert_equivariant(almost, _cloud(dtype=torch.float32))
    with pytest.raises(AssertionError, match="tolerance"):
        assert_equivariant(almost, _cloud(dtype=torch.float64))
    assert_equivariant(almost, _cloud(dtype=torch.float64), atol=1e-4)
    # the tolerance scales with the output's magnitude
    assert_equivariant(lambda d: 1e6 * _gyration(d), _cloud(dtype=torch.float32))


def test_rotates_input_features_with_irreps_in():
    data = _cloud()
    data.x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))  # e.g. normals, 1o

    def fn(d):
        return d.x + _centred(d)

    assert_equivariant(fn, data, irreps_out="1o", irreps_in="1o")
    with pytest.raises(AssertionError):
        assert_equivariant(fn, data, irreps_out="1o")  # x treated as invariant: wrong
    with pytest.raises(InvalidInputError, match="data.x"):
        assert_equivariant(fn, data, irreps_out="1o", irreps_in="2x1o")


def test_never_mutates_the_input():
    data = _cloud(x=torch.ones(40, 1))
    before = data.pos.clone()

    def mutating(d):
        d.pos.mul_(0.5)
        d.x.add_(1)
        return _gyration(d)

    assert_equivariant(mutating, data)
    assert torch.equal(data.pos, before) and torch.equal(data.x, torch.ones(40, 1))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return equivariant_seg(num_classes=3, lmax=2, width=4, depth=2, radius=1.0).eval()


@pytest.mark.parametrize("dtype", DTYPES)
def test_passes_on_the_equivariant_network(model, dtype):
    model.to(dtype)
    data = _cloud(dtype=dtype)
    with torch.no_grad():
        assert_equivariant(model, data)
        assert_equivariant(model.features, data, irreps_out=model.irreps_out)


class _ElementwiseSilu(torch.nn.Module):
    """A gate followed by SiLU on every component, vector components included: wrong."""

    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def forward(self, x):
        return torch.nn.functional.silu(self.gate(x))


def test_catches_a_broken_layer(model):
    model.float()
    data = _cloud()
    layer = model.backbone.layers[0]  # the first of two: its vectors feed the last scalars
    gate = layer.gate
    layer.gate = _ElementwiseSilu(gate)
    try:
        with torch.no_grad():
            with pytest.raises(AssertionError, match="not equivariant"):
                assert_equivariant(model.features, data, irreps_out=model.irreps_out)
            with pytest.raises(AssertionError, match="not invariant"):
                assert_equivariant(model, data)
    finally:
        layer.gate = gate


def test_bad_arguments():
    data = _cloud()
    with pytest.raises(InvalidInputError, match="irreps_out.dim"):
        assert_equivariant(_centred, data, irreps_out="2x1o")
    with pytest.raises(InvalidInputError, match="irreps_out"):
        assert_equivariant(_centred, data, irreps_out="1q")
    with pytest.raises(InvalidInputError, match="group"):
        assert_equivariant(_centred, data, group="SE3")
    with pytest.raises(InvalidInputError, match="trials"):
        assert_equivariant(_centred, data, trials=0)
    with pytest.raises(InvalidInputError, match="data.pos"):
        assert_equivariant(_centred, Data(pos=torch.zeros(4, 2)))
    with pytest.raises(InvalidInputError, match="callable"):
        assert_equivariant(None, data)
    with pytest.raises(InvalidInputError, match="floating"):
        assert_equivariant(lambda d: d.pos.argmax(1), data)
    with pytest.raises(AssertionError, match="NaN"):
        assert_equivariant(lambda d: d.pos.sum() * torch.tensor(float("nan")), data)
