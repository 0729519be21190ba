"""Temporal feature reuse: exactness at threshold 0, skipped work, local_seg layers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.models import create
from geo3d.models.temporal import (DEFAULT_THRESHOLD, FeatureReuse, _match_numpy, _match_torch,
                                   _union)
from geo3d.models.voxels import (SubmanifoldConv, _neighbour_table, _neighbour_table_numpy,
                                 _neighbour_table_torch, _searchsorted, voxelize)

VOXEL = 0.25


def _model(dtype=torch.float64, in_channels=1):
    torch.manual_seed(0)
    model = create("local_seg", in_channels=in_channels, num_classes=4, width=8, depth=2,
                   voxel_size=VOXEL, head_channels=(8,))
    for m in model.modules():  # non-trivial normalisation statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.to(dtype).eval()


def _scene(seed: int = 0):
    """World points on a 1/64 m lattice (exact in float32): a ground patch and a wall."""
    g = np.random.default_rng(seed)
    ground = np.stack(np.meshgrid(np.arange(0, 8, 0.125), np.arange(-4, 4, 0.125), [0.0]), -1)
    wall = np.stack(np.meshgrid([6.0], np.arange(-4, 4, 0.125), np.arange(0, 2, 0.125)), -1)
    pts = np.concatenate([ground.reshape(-1, 3), wall.reshape(-1, 3)])
    pts = pts + g.integers(0, 4, size=pts.shape) / 64.0
    return torch.from_numpy(pts), torch.from_numpy(g.integers(0, 64, size=len(pts)) / 64.0)


def _frame(t: int, world, intensity, dtype, drop: bool = True, far_object: bool = False):
    """Frame ``t``: the sensor moves 0.25 m along x per frame; a 1 m wide strip of the
    static points (moving with ``t``) is occluded when ``drop``; a 1 m cube moves 0.5 m
    per frame (2 m and 20 m away from the rest with ``far_object``)."""
    strip = (world[:, 1] >= -3 + t) & (world[:, 1] < -2 + t)
    keep = ~strip if drop else torch.ones(len(world), dtype=torch.bool)
    obj = torch.stack(torch.meshgrid(torch.arange(0, 1, 0.125), torch.arange(0, 1, 0.125),
                                     torch.arange(0, 1, 0.125), indexing="ij"), -1).reshape(-1, 3)
    step = 2.0 if far_object else 0.5  # 2 m: beyond its own size plus any threshold used
    obj = obj.double() + torch.tensor([2.0 + step * t, 20.0 if far_object else 1.0, 0.25])
    pos_w = torch.cat([world[keep], obj])
    x = torch.cat([intensity[keep], torch.full((len(obj),), 0.5, dtype=torch.float64)])
    pose = torch.eye(4, dtype=torch.float64)
    pose[0, 3] = 0.25 * t
    pose[2, 3] = 1.5
    pos = pos_w - pose[:3, 3]  # exact: lattice points minus multiples of 1/4
    return Data(pos=pos.to(dtype), x=x.view(-1, 1).to(dtype), ego_pose=pose.to(dtype)[None],
                frame=t), len(obj)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threshold_zero_equals_full_recomputation(dtype):
    model = _model(dtype)
    reuse = FeatureReuse(model, threshold=0.0).eval()
    world, intensity = _scene()
    skipped = 0
    for t in range(4):
        frame, _ = _frame(t, world, intensity, dtype)
        out = reuse(frame)
        with torch.no_grad():
            full = model(reuse.to_world(frame))
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(out, full, rtol=tol, atol=tol)
        if t:
            assert reuse.stats["rows"][-1] < reuse.stats["voxels"]  # some work was skipped
            skipped += reuse.stats["voxels"] - reuse.stats["rows"][-1]
    assert skipped > 0


def test_identical_frame_computes_nothing():
    model = _model()
    reuse = FeatureReuse(model, threshold=0.0).eval()
    world, intensity = _scene()
    frame, _ = _frame(1, world, intensity, torch.float64)
    first = reuse(frame)
    assert reuse.stats["macs"] == model.count_macs(reuse.to_world(frame)) > 0
    again = reuse(frame)
    assert reuse.stats["macs"] == 0 and reuse.stats["rows"] == [0] * model.num_stages
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    reuse.reset()
    reuse(frame)
    assert reuse.stats["rows"][0] == reuse.stats["voxels"]


def test_positive_threshold_skips_work_and_recomputes_moved_objects():
    model = _model()
    reuse = FeatureReuse(model, threshold=0.3).eval()
    world, intensity = _scene()
    outs = []
    for t in range(3):  # the object is 20 m away from everything, moving 2 m per frame
        jittered = world + t / 64.0  # the static scene shifts by less than the threshold
        frame, n_obj = _frame(t, jittered, intensity, torch.float64, drop=False, far_object=True)
        outs.append(reuse(frame))
        if t:  # only the object's 4 x 4 x 4 voxels are new; nothing else is computed
            assert reuse.stats["rows"] == [64] * model.num_stages
    full_macs = model.count_macs(reuse.to_world(frame))
    assert 0 < reuse.stats["macs"] < full_macs / 3
    with torch.no_grad():
        full = model(reuse.to_world(frame))
    # the moved object is recomputed exactly; the static scene keeps frame 0's outputs
    torch.testing.assert_close(outs[-1][-n_obj:], full[-n_obj:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(outs[-1][:-n_obj], outs[0][:-n_obj], rtol=0, atol=0)
    assert not torch.allclose(full[:-n_obj], outs[0][:-n_obj])


def test_recompute_classes_are_never_reused():
    model = _model()
    world, intensity = _scene()
    frames = [_frame(t, world + t / 64.0, intensity, torch.float64, drop=False, far_object=True)[0]
              for t in range(2)]
    with torch.no_grad():
        labels = model(FeatureReuse(model).to_world(frames[0])).argmax(1)
    common = int(labels.mode().values)  # the class most static points get
    plain = FeatureReuse(model, threshold=0.3).eval()
    picky = FeatureReuse(model, threshold=0.3, recompute_classes=[common]).eval()
    for frame in frames:
        plain(frame)
        out = picky(frame)
    assert picky.stats["rows"][-1] > plain.stats["rows"][-1]
    # every point that was (and still is) of that class lies in a recomputed voxel
    pos = picky.to_world(frames[1]).pos
    inverse = model.voxelize(pos, None, torch.zeros(len(pos), dtype=torch.long)).inverse
    redone = torch.isin(inverse, picky.last_rows)
    assert bool(redone[(labels == common) & (out.argmax(1) == common)].all())
    exact = FeatureReuse(model, threshold=0.0, recompute_classes=(0, 1)).eval()
    for frame in frames:
        with torch.no_grad():
            torch.testing.assert_close(exact(frame), model(exact.to_world(frame)),
                                       rtol=1e-12, atol=1e-12)
    for bad in ([-1], "car", [1.5], 3):
        with pytest.raises(InvalidInputError, match="recompute_classes"):
            FeatureReuse(model, recompute_classes=bad)


def test_volatile_flags_follow_every_voxels_output():
    """The cached "never lend" flags, judged only on recomputed voxels and carried for the
    reused ones, equal the flags judged on every voxel's current output."""
    model = _model()
    world, intensity = _scene()
    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # tie classes 0 and 1 at the median voxel: both are predicted
        logits = model(FeatureReuse(model).to_world(_frame(0, world, intensity, torch.float64)[0]))
        last.bias[0] -= (logits[:, 0] - logits[:, 1]).median()
        last.bias[2:] -= 100.0
    rare = [0]
    reuse = FeatureReuse(model, threshold=0.3, recompute_classes=rare).eval()
    for t in range(4):
        frame, _ = _frame(t, world, intensity, torch.float64)
        reuse(frame)
        cache = reuse._cache
        logits = cache["stores"][-1].index_select(0, cache["slot"])
        want = torch.isin(logits.argmax(1), torch.tensor(rare))
        assert torch.equal(cache["volatile"], want) and bool(want.any())
        if t:
            assert reuse.stats["rows"][-1] < reuse.stats["voxels"]  # some voxels carried flags
    assert FeatureReuse(model, threshold=0.3).eval()._volatile(logits, cache["slot"],
                                                              cache["slot"], None) is None


def test_errors():
    model = _model()
    with pytest.raises(InvalidInputError, match="cannot be wrapped"):
        FeatureReuse(create("dgcnn_seg", num_classes=2, width=8, depth=2, emb_channels=8, k=4))
    with pytest.raises(InvalidInputError, match="threshold"):
        FeatureReuse(model, threshold=-0.1)
    reuse = FeatureReuse(backbone=model, threshold=0.1)  # the keyword names
    assert reuse.backbone is model and reuse.model is model
    assert FeatureReuse(model).threshold == DEFAULT_THRESHOLD
    world, intensity = _scene()
    frame, _ = _frame(0, world, intensity, torch.float64)
    with pytest.raises(InvalidInputError, match="eval"):
        reuse.train()(frame)
    reuse.eval()
    with pytest.raises(InvalidInputError, match="ego_pose"):
        reuse(Data(pos=frame.pos, x=frame.x))
    with pytest.raises(InvalidInputError, match="one frame"):
        reuse(Data(pos=frame.pos, x=frame.x, ego_pose=frame.ego_pose,
                   batch=torch.arange(len(frame.pos)) * 2 // len(frame.pos)))
    with pytest.raises(InvalidInputError, match="data.pos"):
        reuse(Data(pos=frame.pos[:, :2], x=frame.x, ego_pose=frame.ego_pose))
    with pytest.raises(InvalidInputError, match="voxel_size"):
        create("local_seg", num_classes=2, voxel_size=0.0)
    with pytest.raises(InvalidInputError, match="pos reaches"):
        model(Data(pos=torch.tensor([[1e6, 0.0, 0.0]], dtype=torch.float64), x=torch.zeros(1, 1, dtype=torch.float64)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxelize_matches_numpy(dtype):
    g = torch.Generator().manual_seed(0)
    pos = (torch.rand(500, 3, generator=g, dtype=torch.float64) * 4 - 2).to(dtype)
    x = torch.rand(500, 2, generator=g, dtype=torch.float64).to(dtype)
    batch = torch.cat([torch.zeros(300, dtype=torch.long), torch.ones(200, dtype=torch.long)])
    vox = voxelize(pos, x, batch, 0.5)
    cells = np.floor(pos.double().numpy() / 0.5).astype(np.int64)
    rows = np.concatenate([batch.numpy()[:, None], cells], 1)
    uniq, inv = np.unique(rows, axis=0, return_inverse=True)  # same order: batch, x, y, z
    assert len(vox.keys) == len(uniq) and torch.equal(vox.inverse, torch.from_numpy(inv.reshape(-1)))
    cent = np.zeros((len(uniq), 3))
    np.add.at(cent, inv.reshape(-1), pos.double().numpy())
    cent /= np.bincount(inv.reshape(-1))[:, None]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(vox.centroid.double().numpy(), cent, rtol=tol, atol=tol)
    np.testing.assert_allclose(vox.features[:, :3].double().numpy(),
                               cent / 0.5 - uniq[:, 1:] - 0.5, rtol=1e-4, atol=1e-4)
    assert torch.equal(vox.batch, torch.from_numpy(uniq[:, 0]))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3), st.integers(-3, 3)),
                min_size=1, max_size=60, unique=True))
def test_neighbour_table_matches_dict(cells):
    pos = torch.tensor(cells, dtype=torch.float64) + 0.5
    vox = voxelize(pos, None, torch.zeros(len(cells), dtype=torch.long), 1.0)
    index = {tuple(np.floor(vox.centroid[i].numpy()).astype(int)): i for i in range(len(vox.keys))}
    table = _neighbour_table(vox.keys, vox.keys)
    for i in range(len(vox.keys)):
        c = np.floor(vox.centroid[i].numpy()).astype(int)
        for o, off in enumerate(itertools.product((-1, 0, 1), repeat=3)):
            want = index.get(tuple(c + np.array(off)), len(vox.keys))
            assert int(table[o, i]) == want
    assert torch.equal(_neighbour_table_torch(vox.keys, vox.keys), table)
    assert torch.equal(_neighbour_table_numpy(vox.keys, vox.keys, chunk=3), table)


def test_neighbour_table_numpy_chunks_and_threads_match_torch():
    """Chunked numpy over 2 threads equals the torch ops, also for another key set."""
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(20000, 3, generator=g) * torch.tensor([12.0, 12.0, 3.0])
    vox = voxelize(pos, None, torch.zeros(20000, dtype=torch.long), 0.25)
    other = voxelize(pos[:5000] + 0.1, None, torch.zeros(5000, dtype=torch.long), 0.25).keys
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for base in (vox.keys, other):
            want = _neighbour_table_torch(vox.keys, base)
            assert (want < len(vox.keys)).float().mean() > 0.2  # many cells are occupied
            assert torch.equal(_neighbour_table_numpy(vox.keys, base, chunk=100), want)
            assert torch.equal(_neighbour_table(vox.keys, base), want)
    finally:
        torch.set_num_threads(threads)


def _brute_force_match(cur, cached, volatile, thr):
    """The matching of ``FeatureReuse._plan`` by its definition, voxel pair by pair."""
    cell = lambda v: np.floor(v.centroid.numpy() / VOXEL).astype(int)  # noqa: E731
    ci, cj = cell(cur), cell(cached)
    ref, cen = cached.centroid.numpy(), cur.centroid.numpy()
    m, mp = len(cen), len(ref)
    window = np.abs(ci[:, None] - cj[None]).max(2) <= 1  # [m, mp]
    own = (ci[:, None] == cj[None]).all(2)
    if thr == 0:
        dist = np.where(own & (cen[:, None] == ref[None]).all(2), 0.0, np.inf)
    else:
        dist = np.linalg.norm(cen[:, None] - ref[None], axis=2)
    dist = np.where(window, dist, np.inf)
    kept = (dist <= thr).any(0)
    lend = np.where(volatile[None], np.inf, dist)
    best = lend.min(1)
    match = np.empty(m, dtype=np.int64)
    for i in range(m):
        mine = np.flatnonzero(own[i] & (lend[i] <= thr))
        match[i] = mine[0] if mine.size else np.flatnonzero(lend[i] == best[i])[0]
    near_gone = (window & ~kept[None]).any(1)
    return match, best, near_gone


@pytest.mark.parametrize("thr", [0.0, 0.2, 0.45])
@pytest.mark.parametrize("with_volatile", [False, True])
def test_matching_numpy_equals_torch_and_definition(thr, with_volatile):
    """The chunked, threaded numpy matching equals the torch ops and a pair-by-pair
    definition: own cell first, else nearest lendable; kept; gone voxels' neighbours."""
    g = torch.Generator().manual_seed(3)
    box = torch.tensor([3.0, 3.0, 1.0])
    rand = lambda n: torch.rand(n, 3, generator=g, dtype=torch.float64) * box  # noqa: E731
    base = rand(300)
    moved = base + torch.randn(300, 3, generator=g, dtype=torch.float64) * 0.1
    pts = torch.cat([base, rand(60) + torch.tensor([3.5, 0.0, 0.0])])  # a new region: fresh
    cached_pts = torch.cat([base[:150], moved[150:], rand(40) * torch.tensor([1.0, 1.0, 0.2])
                            + torch.tensor([0.0, 0.0, 1.0])])  # gone voxels just above
    zeros = lambda n: torch.zeros(n, dtype=torch.long)  # noqa: E731
    cur = voxelize(pts, None, zeros(len(pts)), VOXEL)
    cached = voxelize(cached_pts, None, zeros(len(cached_pts)), VOXEL)
    volatile = (torch.rand(len(cached.keys), generator=g) < 0.2) if with_volatile else None
    union, row, ref_row = _union(cur.keys, cached.keys)
    args = (cur.keys, union, row, ref_row, cur.centroid, cached.centroid, volatile, thr)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = _match_numpy(*args, chunk=7)
    finally:
        torch.set_num_threads(threads)
    want = _match_torch(*args)
    for k, name in ((0, "match"), (2, "table"), (3, "near_gone")):
        assert torch.equal(got[k], want[k]), name
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=0)  # norm's rounding may differ
    vol = np.zeros(len(cached.keys), bool) if volatile is None else volatile.numpy()
    match, best, near_gone = _brute_force_match(cur, cached, vol, thr)
    clean = best <= thr
    assert 0 < clean.sum() < len(clean) and near_gone.any()  # every branch is exercised
    np.testing.assert_allclose(got[1].numpy(), best, rtol=1e-12)
    assert np.array_equal(got[0].numpy()[clean], match[clean])
    assert np.array_equal(got[3].numpy(), near_gone)
    assert torch.equal(got[2], _neighbour_table(cur.keys, cur.keys))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_submanifold_conv_matches_dense_conv3d(dtype):
    torch.manual_seed(0)
    conv = SubmanifoldConv(5).to(dtype).eval()
    conv.norm.running_mean.uniform_(-1, 1)
    conv.norm.running_var.uniform_(0.5, 2)
    g = torch.Generator().manual_seed(1)
    occupied = torch.rand(6, 6, 6, generator=g) < 0.4
    cells = occupied.nonzero()
    vox = voxelize(cells.to(dtype) + 0.5, None, torch.zeros(len(cells), dtype=torch.long), 1.0)
    order = torch.from_numpy(np.lexsort(cells.numpy().T[::-1].copy()))  # voxel order: x, y, z
    cells = cells[order]
    h = torch.randn(len(cells), 5, dtype=dtype, generator=g.manual_seed(2))
    rows = torch.arange(len(cells))
    out, macs = conv(h, rows, _neighbour_table(vox.keys, vox.keys))
    dense = torch.zeros(1, 5, 6, 6, 6, dtype=dtype)
    dense[0, :, cells[:, 0], cells[:, 1], cells[:, 2]] = h.T
    weight = conv.weight.detach().view(3, 3, 3, 5, 5).permute(4, 3, 0, 1, 2)  # [out, in, 3, 3, 3]
    ref = F.conv3d(dense, weight, padding=1)[0, :, cells[:, 0], cells[:, 1], cells[:, 2]].T
    ref = h + F.relu(conv.norm(ref))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    pairs = sum(int(occupied[tuple((c + torch.tensor(o)).tolist())])
                for c in cells for o in itertools.product((-1, 0, 1), repeat=3)
                if all(0 <= v < 6 for v in (c + torch.tensor(o)).tolist()))
    assert macs == pairs * 25


def test_growing_stream_reuses_store_rows_exactly():
    """Threshold 0 over frames that gain and lose voxels: the cache's store rows are
    recycled and grown, and every frame still equals full recomputation."""
    model = _model()
    reuse = FeatureReuse(model, threshold=0.0).eval()
    world, intensity = _scene()
    sizes = []
    for t, keep in enumerate([0.3, 1.0, 0.5, 1.0, 0.2]):  # fraction of the scene kept
        frame, _ = _frame(t, world[: int(keep * len(world))], intensity[: int(keep * len(world))],
                          torch.float64, drop=False)
        out = reuse(frame)
        with torch.no_grad():
            full = model(reuse.to_world(frame))
        torch.testing.assert_close(out, full, rtol=1e-12, atol=1e-12)
        assert reuse.last_rows.numel() == reuse.stats["rows"][-1]
        sizes.append(reuse._cache["stores"][0].shape[0])
    assert sizes[1] > sizes[0]  # grew for the larger frame, never shrinks
    assert sizes == sorted(sizes) and all(s.shape[0] == sizes[-1] for s in reuse._cache["stores"])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=40, unique=True),
       st.lists(st.integers(0, 60), max_size=40, unique=True))
def test_union_matches_numpy(a, b):
    ka, kb = torch.tensor(sorted(a), dtype=torch.long), torch.tensor(sorted(b), dtype=torch.long)
    union, row, other_row = _union(ka, kb)
    assert union.tolist() == np.union1d(ka.numpy(), kb.numpy()).tolist()
    for u, key in enumerate(union.tolist()):
        assert int(row[u]) == (sorted(a).index(key) if key in a else len(a))
        assert int(other_row[u]) == (sorted(b).index(key) if key in b else len(b))
    assert int(row[-1]) == len(a) and int(other_row[-1]) == len(b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_folded_norm_inference_matches_module(dtype):
    """The in-place eval path (no autograd) equals the module path (autograd on)."""
    torch.manual_seed(0)
    conv = SubmanifoldConv(6).to(dtype).eval()
    conv.norm.running_mean.uniform_(-1, 1)
    conv.norm.running_var.uniform_(0.5, 2)
    conv.norm.weight.data.uniform_(0.5, 1.5)
    conv.norm.bias.data.uniform_(-0.5, 0.5)
    cells = torch.randint(0, 5, (40, 3)).unique(dim=0)
    vox = voxelize(cells.to(dtype) + 0.5, None, torch.zeros(len(cells), dtype=torch.long), 1.0)
    h = torch.randn(len(cells), 6, dtype=dtype)
    rows = torch.arange(len(cells))
    table = _neighbour_table(vox.keys, vox.keys)
    ref, macs = conv(h, rows, table)
    with torch.no_grad():
        fast, fast_macs = conv(h, rows, table)
        # the same through a permuted store: voxel i lives in row slot[i]
        slot = torch.randperm(len(cells))
        store = torch.empty_like(h).index_copy_(0, slot, h)
        part = torch.arange(0, len(cells), 2)
        moved, _ = conv(store, part, table.index_select(1, part), slot)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(fast, ref.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(moved, ref.detach()[part], rtol=tol, atol=tol)
    assert fast_macs == macs


def _search_in_child(queue):
    # numpy-built tensors only: torch's own parallel kernels are not fork-safe (OpenMP)
    keys = np.arange(0, 400000, 3)
    got = _searchsorted(torch.from_numpy(keys), torch.from_numpy(keys + 1)).numpy()
    queue.put(bool(np.array_equal(got, np.arange(1, keys.size + 1))))


def test_threaded_searchsorted_matches_numpy_and_survives_fork():
    import multiprocessing
    g = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 1 << 40, (50000,), generator=g).unique()
    query = torch.randint(0, 1 << 40, (9, 20000), generator=g)  # large: split over threads
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        got = _searchsorted(keys, query)
        assert torch.equal(got, torch.from_numpy(np.searchsorted(keys.numpy(), query.numpy())))
        ctx = multiprocessing.get_context("fork")  # the parent's pool exists now
        queue = ctx.Queue()
        child = ctx.Process(target=_search_in_child, args=(queue,))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0 and queue.get(timeout=5)
    finally:
        torch.set_num_threads(threads)
