"""prune: magnitude (layer/global, against torch.nn.utils.prune's rule), LTP, structured."""

from __future__ import annotations

import copy
import io
from typing import Iterable, List, Tuple

import pytest
import torch
from e3nn import o3
from torch import Tensor, nn
from torch_geometric.data import Batch

from geo3d.efficiency import PruneConfig, compression_ratio, profile, prune, sparsity
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


# --------------------------------------------------------------------------- e3nn irreps
# The reference: structured pruning of the e3nn models as it was before it rebuilt layers
# smaller. It ranks the copies of every hidden irrep the same way and zeroes the dropped
# ones (every weight producing or reading them, the head's columns), and the outgoing
# weights of the radial MLPs' dropped hidden units, shapes unchanged; the rebuilt model
# must compute exactly the same.


def _slot_of(irreps, col: int) -> Tuple[int, int]:
    """(slot index, copy index) of column ``col`` in an e3nn ``irreps`` layout."""
    for i, ((mul, ir), sl) in enumerate(zip(irreps, irreps.slices())):
        if sl.start <= col < sl.stop:
            return i, (col - sl.start) // ir.dim
    raise IndexError(col)


def _zero_linear(lin: nn.Module, out_cols: Iterable[int] = (), in_cols: Iterable[int] = ()) -> None:
    """Zero the paths of an e3nn ``o3.Linear`` writing ``out_cols`` / reading ``in_cols``."""
    outs = {_slot_of(lin.irreps_out, c) for c in out_cols}
    ins = {_slot_of(lin.irreps_in, c) for c in in_cols}
    with torch.no_grad():
        for _, ins_, w in lin.weight_views(yield_instruction=True):
            for slot, u in outs:
                if ins_.i_out == slot:
                    w[:, u] = 0
            for slot, u in ins:
                if ins_.i_in == slot:
                    w[u, :] = 0


def _gate_input_columns(gate: nn.Module, out_cols: set) -> List[int]:
    """Columns of ``gate.irreps_in`` that produce the gate-output columns ``out_cols``."""
    n = gate.irreps_in.dim
    eye = torch.eye(n, dtype=torch.float64)
    scalars, gates, gated = (t.to(torch.float64) for t in gate.sc(eye))
    n_scalars = scalars.shape[1]
    # gated irrep copy k reads gate k
    copies = [(n_scalars + sl.start + u * ir.dim, ir.dim)
              for (mul, ir), sl in zip(gate.irreps_gated, gate.irreps_gated.slices())
              for u in range(mul)]
    cols = []
    for c in range(n):
        s = scalars[c].nonzero()
        if s.numel() and int(s[0]) in out_cols:
            cols.append(c)
            continue
        g = gated[c].nonzero()
        if g.numel() and int(g[0]) + n_scalars in out_cols:
            cols.append(c)
            continue
        k = gates[c].nonzero()
        if k.numel():
            start, dim = copies[int(k[0])]
            if start in out_cols:
                cols.append(c)
    return cols


def _zero_multiplicities(model: nn.Module, amount: float) -> set:
    """Zero ``amount`` of the copies of every hidden irrep in every layer, in place; returns
    the zeroed columns of the features."""
    backbone = model.backbone
    layers = list(backbone.layers)
    irreps = backbone.irreps_out  # every layer's output (residual chain: same channels)
    # importance of copy u of slot s: norm of the weights producing it, over layers
    drop_cols: set = set()
    for s, ((mul, ir), sl) in enumerate(zip(irreps, irreps.slices())):
        k = max(1, int(round(mul * (1 - amount))))
        if k >= mul:
            continue
        scores = torch.zeros(mul, dtype=torch.float64)
        for layer in layers:
            cols_u = [_gate_input_columns(layer.gate, set(range(sl.start + u * ir.dim,
                                                                sl.start + (u + 1) * ir.dim)))
                      for u in range(mul)]
            for lin in (layer.lin_out, layer.self_connection):
                for u, cols in enumerate(cols_u):
                    for c in cols:
                        slot, cu = _slot_of(lin.irreps_out, c)
                        for _, ins, w in lin.weight_views(yield_instruction=True):
                            if ins.i_out == slot:
                                scores[u] += float(w[:, cu].detach().pow(2).sum())
        dropped = torch.topk(scores, mul - k, largest=False).indices.tolist()
        for u in dropped:
            drop_cols.update(range(sl.start + u * ir.dim, sl.start + (u + 1) * ir.dim))
    if not drop_cols:
        return drop_cols
    for i, layer in enumerate(layers):
        gate_cols = _gate_input_columns(layer.gate, drop_cols)
        _zero_linear(layer.lin_out, out_cols=gate_cols)
        _zero_linear(layer.self_connection, out_cols=gate_cols)
        if i > 0:  # its input is the previous layer's output
            _zero_linear(layer.lin_in, in_cols=drop_cols, out_cols=drop_cols)
            _zero_linear(layer.self_connection, in_cols=drop_cols)
    scal = backbone.scalar_index.tolist()
    with torch.no_grad():
        head = model.head[0]
        for j, c in enumerate(scal):
            if c in drop_cols:  # the scalar and its pooled copies (segmentation context)
                head.weight[:, j::len(scal)] = 0
    return drop_cols


def _zero_radial_units(model: nn.Module, amount: float, drop_cols: set) -> None:
    """Zero the outgoing weights of ``amount`` of the hidden units of every radial MLP, in
    place: per hidden layer those of lowest ``||w_in|| * ||w_out||`` (raw e3nn weights
    before any zeroing; outgoing to the tensor-product weights of the kept copies only)."""
    for i, layer in enumerate(model.backbone.layers):
        tp = layer.tp
        alive = torch.ones(tp.weight_numel, dtype=torch.bool)
        dead = {_slot_of(tp.irreps_in1, c) for c in drop_cols} if i > 0 else set()
        for _, ins, w in tp.weight_views(torch.arange(tp.weight_numel)[None], yield_instruction=True):
            for slot, u in dead:
                if ins.i_in1 == slot:  # "uvu": weights [mul1, mul2] of input-1 copy u
                    alive[w[0][u]] = False
        ws = [lay.weight.detach().clone() for lay in layer.radial]  # [h_in, h_out]
        ws[-1] = ws[-1][:, alive]
        for j, (w_in, w_out) in enumerate(zip(ws, ws[1:])):
            h = w_in.shape[1]
            score = w_in.norm(dim=0) * w_out.norm(dim=1)
            drop = torch.topk(score, h - max(1, round(h * (1 - amount))), largest=False).indices
            with torch.no_grad():
                layer.radial[j + 1].weight[drop] = 0


def _zeroed(model: nn.Module, amount: float) -> Tuple[nn.Module, Tensor]:
    """The zeroed reference and the mask of its feature columns that were kept."""
    ref = copy.deepcopy(model)
    dropped = _zero_multiplicities(ref, amount)
    _zero_radial_units(ref, amount, dropped)
    kept = torch.ones(model.irreps_out.dim, dtype=torch.bool)
    kept[sorted(dropped)] = False
    return ref, kept


def _clouds(dtype=torch.float64, n: int = 24) -> Batch:
    return Batch.from_data_list([cloud(n, seed, dtype) for seed in range(2)])


def _expected_muls(model: nn.Module, amount: float) -> list:
    return [max(1, round(mul * (1 - amount))) for mul, _ in model.irreps_out]


def _assert_radial_widths(model: nn.Module, out: nn.Module, amount: float) -> None:
    """Every hidden layer of every radial MLP kept ``max(1, round(h * (1 - amount)))``."""
    for old, new in zip(model.backbone.layers, out.backbone.layers):
        hidden = [max(1, round(h * (1 - amount))) for h in old.radial.hs[1:-1]]
        assert new.radial.hs == [old.radial.hs[0], *hidden, new.tp.weight_numel]
        assert hidden < old.radial.hs[1:-1]


def _structured(amount: float) -> PruneConfig:
    return PruneConfig(method="structured", amount=amount)


@pytest.mark.parametrize("amount", [0.3, 0.5])
@pytest.mark.parametrize("lmax", [1, 2])
@pytest.mark.parametrize("name", ["equivariant_seg", "equivariant_cls"])
def test_multiplicity_pruning_rebuilds_smaller_and_equals_zeroing(name, lmax, amount):
    model = build(name, width=8, lmax=lmax).double().eval()
    before = snapshot(model)
    data = _clouds()
    out = prune(model, _structured(amount), data)
    assert_unchanged(model, before)
    # the hidden irreps of every layer lost copies: max(1, round(mul * (1 - amount))) kept
    muls = _expected_muls(model, amount)
    assert out.irreps_out == o3.Irreps([(m, ir) for m, (_, ir) in zip(muls, model.irreps_out)])
    assert muls != [mul for mul, _ in model.irreps_out]
    for i, layer in enumerate(out.backbone.layers):
        assert layer.irreps_out == out.irreps_out and layer.residual == (i > 0)
    _assert_radial_widths(model, out, amount)
    # the first layer reads the input scalars (kept): its tensor product keeps its size
    for old, new in zip(model.backbone.layers[1:], out.backbone.layers[1:]):
        assert new.tp.weight_numel < old.tp.weight_numel
    assert out.backbone.layers[1].irreps_in == out.irreps_out
    assert out.backbone.num_scalars == len(out.backbone.scalar_index) == muls[0]
    assert out.head[0].in_features == out.context * muls[0]
    # exactly the original with the same copies zeroed (float64)
    ref, kept = _zeroed(model, amount)
    with torch.no_grad():
        torch.testing.assert_close(out(data), ref(data), rtol=0, atol=1e-10)
        feats, ref_feats = out.features(data), ref.features(data)
    assert int(kept.sum()) == out.irreps_out.dim
    torch.testing.assert_close(feats, ref_feats[:, kept], rtol=0, atol=1e-10)
    assert ref_feats[:, ~kept].eq(0).all()
    # fewer parameters and MACs (tensor products included); the linear MACs lose at least
    # the radial MLPs' (edges x sum of h_in * h_out), the o3.Linear ones shrink too
    edges = []
    hook = model.backbone.layers[0].radial.register_forward_pre_hook(
        lambda m, args: edges.append(args[0].shape[0]))
    dense = profile(model, data, repeats=0, memory=False)
    hook.remove()
    small = profile(out, data, repeats=0, memory=False)
    assert small.params < dense.params and small.macs < dense.macs
    assert small.params == sum(p.numel() for p in out.parameters())
    for kind in ("linear", "tensor_product"):
        assert small.macs_breakdown[kind] < dense.macs_breakdown[kind]

    def radial_macs(m: nn.Module) -> int:
        return edges[0] * sum(a * b for lay in m.backbone.layers
                              for a, b in zip(lay.radial.hs, lay.radial.hs[1:]))

    saved = radial_macs(model) - radial_macs(out)
    assert dense.macs_breakdown["linear"] - small.macs_breakdown["linear"] >= saved > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_multiplicity_pruning_is_exactly_equivariant(dtype):
    model = build("equivariant_seg", width=8, lmax=2).to(dtype).eval()
    before = snapshot(model)
    out = prune(model, _structured(0.5))
    assert_unchanged(model, before)
    assert [mul for mul, _ in out.irreps_out] == _expected_muls(model, 0.5)
    _assert_radial_widths(model, out, 0.5)
    data = cloud(48, 0, dtype)
    assert_equivariant(out.features, data, irreps_out=out.irreps_out)
    assert_equivariant(out, data)


def test_multiplicity_pruned_model_copies_saves_loads_and_trains():
    model = build("equivariant_seg", width=8, lmax=2).eval()
    out = prune(model, _structured(0.5))
    data = cloud(32, 0)
    assert f"-> {out.irreps_out})" in repr(out.backbone.layers[-1].gate)
    with torch.no_grad():
        y = out(data)
        assert torch.equal(copy.deepcopy(out)(data), y)
        buf = io.BytesIO()
        torch.save(out, buf)  # the whole module pickles
        buf.seek(0)
        assert torch.equal(torch.load(buf, weights_only=False)(data), y)
        # the state_dict loads into another pruned model of the same shapes
        noisy = copy.deepcopy(model)
        for p in noisy.parameters():
            p.add_(torch.randn_like(p))
        other = prune(noisy, _structured(0.5))
        assert not torch.allclose(other(data), y)
        other.load_state_dict(out.state_dict())
        assert torch.equal(other(data), y)
    out.train()
    data = batch(out, n=32)
    out.loss(out(data), data).backward()
    assert all(p.grad is not None for p in out.parameters())


def test_multiplicity_pruning_amount_edges():
    model = build("equivariant_cls", width=8, lmax=2).double().eval()
    data = _clouds()
    # too small to drop a copy (round(8 * 0.99) = 8): the model is unchanged
    same = prune(model, _structured(0.01), data)
    assert same.irreps_out == model.irreps_out
    assert_unchanged(same, snapshot(model))
    # close to 1: one copy of every irrep is left
    one = prune(model, _structured(0.99), data)
    assert [mul for mul, _ in one.irreps_out] == [1] * len(model.irreps_out)
    with torch.no_grad():
        torch.testing.assert_close(one(data), _zeroed(model, 0.99)[0](data), rtol=0, atol=1e-10)
    assert_equivariant(one.features, data, irreps_out=one.irreps_out)


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
