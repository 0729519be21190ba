"""Tests of geo3d.geometry.neighbors against scipy's cKDTree and a vanilla FPS loop."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from geo3d.errors import InvalidInputError
from geo3d.geometry import _fps_fpsample, _nn_scipy, _nn_torch, neighbors
from geo3d.geometry.neighbors import fps, knn, knn_graph, radius, radius_graph, voxel_grid

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
DTYPES = [torch.float32, torch.float64]


# ----------------------------------------------------------------------------- references


def _items(batch, n):
    return np.zeros(n, dtype=np.int64) if batch is None else batch.numpy()


def ref_search(x, y, bx=None, by=None, k=None, r=None, exclude_self=False):
    """Brute reference: all distances of an item from cKDTree, sorted by (distance, index)."""
    x64, y64 = x.double().numpy(), y.double().numpy()
    bx, by = _items(bx, len(x64)), _items(by, len(y64))
    rows, cols = [], []
    for b in np.unique(by):
        xi, yi = np.flatnonzero(bx == b), np.flatnonzero(by == b)
        if not len(xi):
            continue
        d, i = cKDTree(x64[xi]).query(y64[yi], k=len(xi))
        d, i = d.reshape(len(yi), -1), i.reshape(len(yi), -1)
        for row, j in enumerate(yi):
            order = np.lexsort((i[row], d[row]))
            cand, dist = xi[i[row][order]], d[row][order]
            keep = np.ones(len(cand), dtype=bool)
            if exclude_self:
                keep &= cand != j
            if r is not None:
                keep &= dist <= r
            cand = cand[keep][: (k if k is not None else None)]
            rows += [j] * len(cand)
            cols += cand.tolist()
    return torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)


def ref_fps(points, m, start):
    """Vanilla FPS in float64: keep min distances, argmax (lowest index), never repeat."""
    p = np.asarray(points, dtype=np.float64)
    dist = np.full(len(p), np.inf)
    out = [start]
    dist[start] = -1
    for _ in range(m - 1):
        diff = p - p[out[-1]]
        dist = np.minimum(dist, (diff * diff).sum(1))
        dist[out] = -1
        out.append(int(np.argmax(dist)))
    return out


# ----------------------------------------------------------------------------- clouds


@st.composite
def clouds(draw, max_items=3, max_points=40):
    """Batched clouds: uniform, clustered, duplicated or lattice (ties) items."""
    kind = draw(st.sampled_from(["uniform", "clustered", "duplicated", "lattice"]))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    sizes = draw(st.lists(st.integers(0, max_points), min_size=1, max_size=max_items))
    rng = np.random.default_rng(seed)
    parts = []
    for n in sizes:
        if kind == "uniform":
            p = rng.random((n, 3))
        elif kind == "clustered":
            centres = rng.random((3, 3)) * 10
            p = centres[rng.integers(0, 3, n)] + rng.normal(scale=0.05, size=(n, 3))
        elif kind == "duplicated":
            p = rng.random((max(1, n // 8), 3))[rng.integers(0, max(1, n // 8), n)]
        else:
            p = rng.integers(0, 3, (n, 3)).astype(np.float64)
        parts.append(p)
    pos = torch.tensor(np.concatenate(parts), dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, batch


def _check_no_cross(edge, bx, by, y_row=0):
    if edge.numel():
        assert torch.equal(by[edge[y_row]], bx[edge[1 - y_row]])


# ----------------------------------------------------------------------------- knn


@SETTINGS
@given(clouds(), clouds(), st.integers(1, 12), st.sampled_from(["kdtree", "torch"]))
def test_knn_matches_reference(xc, yc, k, backend):
    (x, bx), (y, by) = xc, yc
    y = y.to(x.dtype)
    out = neighbors._knn(x, y, k, bx, by, backend=backend)
    assert out.dtype == torch.long and out.shape[0] == 2
    assert torch.equal(out, ref_search(x, y, bx, by, k=k))
    _check_no_cross(out, bx, by)


@SETTINGS
@given(clouds(), st.integers(1, 12), st.booleans(), st.sampled_from(["kdtree", "torch"]))
def test_knn_graph_matches_reference(xc, k, loop, backend):
    x, b = xc
    out = neighbors._knn_graph(x, k, b, loop, backend=backend)
    ref = ref_search(x, x, b, b, k=k, exclude_self=not loop)
    assert torch.equal(out, ref.flip(0))  # source_to_target: [neighbour, centre]
    _check_no_cross(out, b, b)
    counts = torch.bincount(out[1], minlength=len(x))
    sizes = torch.bincount(b)[b]
    assert torch.equal(counts, torch.clamp(sizes - int(not loop), max=k))
    if not loop:
        assert not bool((out[0] == out[1]).any())


@SETTINGS
@given(clouds(), st.floats(0.0, 1.5), st.sampled_from([None, 1, 3, 8]),
       st.booleans(), st.sampled_from(["kdtree", "torch"]))
def test_radius_graph_matches_reference(xc, r, cap, loop, backend):
    x, b = xc
    out = neighbors._radius_graph(x, r, b, loop, cap, backend=backend)
    ref = ref_search(x, x, b, b, k=cap, r=r, exclude_self=not loop)
    assert torch.equal(out, ref.flip(0))
    _check_no_cross(out, b, b)


@SETTINGS
@given(clouds(), clouds(), st.floats(0.0, 2.0), st.sampled_from([None, 2, 5]),
       st.sampled_from(["kdtree", "torch"]))
def test_radius_matches_reference(xc, yc, r, cap, backend):
    (x, bx), (y, by) = xc, yc
    out = neighbors._radius(x, y, r, bx, by, cap, backend=backend)
    assert torch.equal(out, ref_search(x, y, bx, by, k=cap, r=r))


def test_ties_keep_lowest_index():
    # query at the origin, four points at distance 1 with shuffled indices
    x = torch.tensor([[5.0, 5, 5], [0, 1, 0], [1, 0, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    y = torch.zeros(1, 3)
    for backend in ("kdtree", "torch"):
        assert neighbors._knn(x, y, 2, backend=backend)[1].tolist() == [1, 2]
        assert neighbors._radius(x, y, 1.0, max_num_neighbors=3, backend=backend)[
            1
        ].tolist() == [1, 2, 3]
        assert neighbors._radius(x, y, 1.0, backend=backend)[1].tolist() == [1, 2, 3, 4, 5]


def test_radius_zero_finds_coincident_points():
    x = torch.tensor([[0.0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 1.0000001], [0, 0, 0]])
    assert radius_graph(x, 0.0).tolist() == [[2, 4, 0, 4, 0, 2], [0, 0, 2, 2, 4, 4]]


@pytest.mark.parametrize("k", [6, 16])
def test_lattice_ties_match_reference(k):
    g = torch.stack(torch.meshgrid(*[torch.arange(9.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    g = g[torch.randperm(len(g), generator=torch.Generator().manual_seed(0))]
    ref = ref_search(g, g, k=k, exclude_self=True).flip(0)
    for backend in ("kdtree", "torch"):
        assert torch.equal(neighbors._knn_graph(g, k, backend=backend), ref)


def test_many_duplicates_use_the_exact_path():
    # 200 copies of one point: a 5-NN graph must give 5 other copies, lowest indices
    x = torch.cat([torch.ones(200, 3), torch.rand(30, 3) + 5])
    for backend in ("kdtree", "torch"):
        e = neighbors._knn_graph(x, 5, backend=backend)
        assert torch.equal(torch.bincount(e[1], minlength=230), torch.full((230,), 5))
        assert e[0][e[1] == 7].tolist() == [0, 1, 2, 3, 4]
        assert e[0][e[1] == 0].tolist() == [1, 2, 3, 4, 5]


def test_chunked_paths_agree(monkeypatch):
    torch.manual_seed(0)
    x = torch.rand(300, 3)
    x[100:160] = x[0]  # a big duplicate group
    y = torch.rand(90, 3)
    full = [knn_graph(x, 6), radius_graph(x, 0.2), radius_graph(x, 0.2, max_num_neighbors=4),
            knn(x, y, 5), radius(x, y, 0.15)]
    monkeypatch.setattr(_nn_scipy, "_ROW_CHUNK", 7)
    monkeypatch.setattr(_nn_scipy, "_REORDER_MIN", 16)  # queries in spatial order
    monkeypatch.setattr(_nn_scipy, "_ENTRY_BUDGET", 50)
    monkeypatch.setattr(_nn_scipy, "_guess_count", lambda *a: 2)  # force the overflow path
    monkeypatch.setattr(_nn_torch, "_ENTRY_BUDGET", 500)
    for backend in ("kdtree", "torch"):
        got = [
            neighbors._knn_graph(x, 6, backend=backend),
            neighbors._radius_graph(x, 0.2, backend=backend),
            neighbors._radius_graph(x, 0.2, max_num_neighbors=4, backend=backend),
            neighbors._knn(x, y, 5, backend=backend),
            neighbors._radius(x, y, 0.15, backend=backend),
        ]
        for a, b in zip(full, got):
            assert torch.equal(a, b)


def test_flow_loop_and_layout():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    e = knn_graph(x, 1)
    assert e.tolist() == [[1, 0, 1], [0, 1, 2]]  # neighbour -> centre
    assert knn_graph(x, 1, flow="target_to_source").tolist() == [[0, 1, 2], [1, 0, 1]]
    assert knn_graph(x, 1, loop=True).tolist() == [[0, 1, 2], [0, 1, 2]]
    assert radius_graph(x, 1.0).tolist() == [[1, 0], [0, 1]]
    assert radius_graph(x, 2.0, loop=True, flow="target_to_source").tolist() == [
        [0, 0, 1, 1, 1, 2, 2],
        [0, 1, 1, 0, 2, 2, 1],
    ]
    assert knn(x, x[:1], 2).tolist() == [[0, 0], [0, 1]]
    with pytest.raises(InvalidInputError, match="flow"):
        knn_graph(x, 1, flow="both")


def test_items_missing_in_x_and_fewer_than_k():
    x = torch.rand(5, 3)
    bx = torch.tensor([0, 0, 2, 2, 2])
    y = torch.rand(4, 3)
    by = torch.tensor([0, 1, 1, 3])
    e = knn(x, y, 10, bx, by)
    assert e[0].tolist() == [0, 0]  # items 1 and 3 have no x; item 0 has only 2 points
    assert knn_graph(x, 10, bx).shape == (2, 2 * 1 + 3 * 2)


def test_empty_inputs():
    e0 = torch.empty(0, 3)
    x = torch.rand(4, 3)
    for out in [knn(e0, x, 3), knn(x, e0, 3), knn_graph(e0, 3), radius(e0, x, 1.0),
                radius_graph(e0, 0.5), radius(x, e0, 1.0, max_num_neighbors=2)]:
        assert out.shape == (2, 0) and out.dtype == torch.long
    assert fps(e0).shape == (0,) and fps(e0).dtype == torch.long
    assert voxel_grid(e0, 1.0).shape == (0,) and voxel_grid(e0, 1.0).dtype == torch.long
    assert knn_graph(torch.rand(1, 3), 4).shape == (2, 0)


def test_inputs_are_not_mutated_and_results_stay_on_device():
    x = torch.rand(50, 3, dtype=torch.float64)
    b = torch.tensor([0] * 20 + [1] * 30)
    copy_x, copy_b = x.clone(), b.clone()
    for out in [knn_graph(x, 4, b), radius_graph(x, 0.3, b), fps(x, b), voxel_grid(x, 0.1, b)]:
        assert out.device == x.device
    assert torch.equal(x, copy_x) and torch.equal(b, copy_b)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: knn(x, x, 0), "k must be >= 1"),
        (lambda x: knn(x, x, 2.5), "k must be an integer"),
        (lambda x: knn_graph(x, True), "k must be an integer"),
        (lambda x: knn(x, x[:, :2], 2), "same number of columns"),
        (lambda x: knn(x.long(), x, 2), "x must be a floating-point"),
        (lambda x: knn(x, x.unsqueeze(0), 2), "y must have shape"),
        (lambda x: knn(x, x, 2, torch.tensor([1, 0] * 5)), "batch_x must be sorted"),
        (lambda x: knn(x, x, 2, batch_y=torch.zeros(3, dtype=torch.long)), "batch_y must have"),
        (lambda x: knn_graph(x, 2, loop=1), "loop must be a bool"),
        (lambda x: radius(x, x, -0.1), "r must be"),
        (lambda x: radius(x, x, float("nan")), "r must be"),
        (lambda x: radius_graph(x, float("inf")), "r must be"),
        (lambda x: radius_graph(x, 0.5, max_num_neighbors=0), "max_num_neighbors"),
        (lambda x: fps(x, ratio=0.0), "ratio"),
        (lambda x: fps(x, ratio=1.5), "ratio"),
        (lambda x: fps(x, ratio=torch.tensor([0.5, 0.5, 0.5])), "ratio must have"),
        (lambda x: fps(x, random_start=None), "random_start"),
        (lambda x: voxel_grid(x, 0.0), "size must be positive"),
        (lambda x: voxel_grid(x, [1.0, 2.0]), "size must have 1 or 3"),
        (lambda x: voxel_grid(x, 1.0, start=float("nan")), "start contains NaN"),
        (lambda x: voxel_grid(x * 1e6, 1e-16), "size is too small"),
        (lambda x: neighbors._knn(x, x, 2, backend="gpu"), "backend"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call(torch.rand(10, 3))


@pytest.mark.parametrize("fn", [lambda x: knn(x, x, 2), lambda x: radius_graph(x, 0.1),
                                lambda x: fps(x), lambda x: voxel_grid(x, 0.1)])
def test_nan_and_inf_raise(fn):
    for bad in (float("nan"), float("inf")):
        x = torch.rand(10, 3)
        x[3, 1] = bad
        with pytest.raises(InvalidInputError, match="NaN or Inf"):
            fn(x)


# ----------------------------------------------------------------------------- fps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, ratio", [(2, 0.5), (37, 0.3), (600, 0.25), (5000, 0.2)])
def test_fps_matches_vanilla_loop(dtype, n, ratio):
    rng = np.random.default_rng(n)
    p = torch.tensor(rng.random((n, 3)), dtype=dtype)
    out = fps(p, ratio=ratio, random_start=False)
    m = math.ceil(ratio * n)
    assert out.tolist() == ref_fps(p.numpy(), m, 0)
    assert torch.equal(neighbors._fps(p, ratio=ratio, random_start=False, backend="torch"), out)


def test_fps_far_from_origin_and_high_dimensional():
    rng = np.random.default_rng(7)
    utm = torch.tensor(rng.random((800, 3)) * 50 + [4.5e5, 5.4e6, 100.0])  # float64
    assert fps(utm, ratio=0.1, random_start=False).tolist() == ref_fps(utm.numpy(), 80, 0)
    feats = torch.tensor(rng.random((300, 10)), dtype=torch.float32)  # D > 8: torch loop
    assert fps(feats, ratio=0.1, random_start=False).tolist() == ref_fps(feats.numpy(), 30, 0)


def test_other_dtypes_and_integer_batches():
    x = torch.rand(60, 3)
    b = torch.tensor([0] * 25 + [1] * 35, dtype=torch.int32)
    assert torch.equal(knn_graph(x, 4, b), knn_graph(x, 4, b.long()))
    assert torch.equal(fps(x, b.to(torch.uint8), random_start=False),
                       fps(x, b.long(), random_start=False))
    xh = x.to(torch.bfloat16)
    assert torch.equal(radius_graph(xh, 0.3), radius_graph(xh.double(), 0.3))
    with pytest.raises(InvalidInputError, match="at least one column"):
        knn(torch.rand(5, 0), torch.rand(5, 0), 1)


def test_fps_falls_back_to_the_torch_loop(monkeypatch):
    x = torch.rand(200, 3)
    b = torch.tensor([0] * 80 + [1] * 120)
    want = fps(x, b, 0.3, random_start=False)
    monkeypatch.setattr(_fps_fpsample, "fps", lambda *a: None)
    assert torch.equal(fps(x, b, 0.3, random_start=False), want)


def test_fpsample_start_workaround_is_used():
    # the replayed kd-tree build must give the wanted start (no torch fallback)
    rng = np.random.default_rng(1)
    for n in (3, 100, 4097, 20000):
        p = rng.random((n, 3)).astype(np.float32)
        for start in (0, n // 3, n - 1):
            idx = _fps_fpsample.fps(p, min(n, 50), start)
            assert idx is not None and idx[0] == start


@SETTINGS
@given(clouds(max_points=60), st.floats(0.05, 1.0), st.booleans())
def test_fps_counts_groups_and_distinct(xc, ratio, random_start):
    x, b = xc
    torch.manual_seed(0)
    out = fps(x, b, ratio=ratio, random_start=random_start)
    sizes = torch.bincount(b)
    want = torch.ceil(sizes.float() * torch.tensor(ratio, dtype=torch.float32)).long()
    assert torch.equal(torch.bincount(b[out], minlength=len(sizes)), torch.minimum(want, sizes))
    assert bool((b[out][1:] >= b[out][:-1]).all())  # grouped by item
    for item in range(len(sizes)):
        sel = out[b[out] == item]
        assert len(set(sel.tolist())) == len(sel)  # never the same index twice
        if not random_start and len(sel):
            assert int(sel[0]) == int((b < item).sum())  # starts at the item's first point


def test_fps_duplicates_continue_with_lowest_unused():
    p = torch.zeros(50, 3)
    p[:5] = torch.rand(5, 3) + 1
    out = fps(p, ratio=0.4, random_start=False).tolist()
    assert len(out) == 20 and len(set(out)) == 20
    assert len({tuple(v) for v in p[out[:6]].tolist()}) == 6  # the 6 locations first
    assert out[6:] == sorted(set(range(50)) - set(out[:6]))[:14]  # then lowest unused


def test_fps_random_start_is_seeded_and_ratio_tensor():
    x = torch.rand(100, 3)
    b = torch.tensor([0] * 40 + [1] * 60)
    torch.manual_seed(3)
    a = fps(x, b, 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, fps(x, b, 0.5))
    out = fps(x, b, ratio=torch.tensor([0.25, 1.0]), random_start=False)
    assert torch.equal(torch.bincount(b[out]), torch.tensor([10, 60]))
    assert sorted(out[10:].tolist()) == list(range(40, 100))


# ----------------------------------------------------------------------------- voxel grid


def test_voxel_grid_pyg_examples():
    # hand-computed with PyG's formula (batch appended as a coordinate of size 1)
    pos = torch.tensor([[0.0, 0], [11, 9], [2, 8], [2, 2], [8, 3]])
    batch = torch.tensor([0, 0, 0, 1, 1])
    assert voxel_grid(pos, 5, batch).tolist() == [0, 5, 3, 6, 7]
    assert voxel_grid(pos, size=5).tolist() == [0, 5, 3, 0, 1]
    assert voxel_grid(pos, 5, batch, start=-1, end=[18, 14]).tolist() == [0, 10, 4, 16, 17]
    assert voxel_grid(pos, 5, start=-1, end=[18, 14]).tolist() == [0, 10, 4, 0, 1]
    assert voxel_grid(pos, torch.tensor([5.0, 10.0]), batch).tolist() == [0, 2, 0, 3, 4]
    assert voxel_grid(pos[:, 0], 5).tolist() == [0, 2, 0, 0, 1]


@SETTINGS
@given(clouds(), st.floats(0.05, 2.0), st.sampled_from(DTYPES))
def test_voxel_grid_groups_points_by_voxel(xc, size, dtype):
    x, b = xc
    x = x.to(dtype)
    if not len(x):
        return
    ids = voxel_grid(x, [size, size * 1.5, size * 0.5], b)
    sizes = torch.tensor([size, size * 1.5, size * 0.5, 1.0], dtype=dtype)
    pts = torch.cat([x, b[:, None].to(dtype)], 1)
    cells = ((pts - pts.min(0).values) / sizes).long().numpy()  # floor: offsets are >= 0
    _, ref = np.unique(cells, axis=0, return_inverse=True)
    _, got = np.unique(ids.numpy(), return_inverse=True)
    # same partition of the points (ids are a bijection of the voxel cells)
    pairs = set(zip(ref.reshape(-1).tolist(), got.tolist()))
    assert len(pairs) == len(set(ref.reshape(-1).tolist())) == len(set(got.tolist()))


def test_batch_items_searched_in_parallel_equal_one_thread():
    """Batch items go to the thread pool (one kd-tree each, one cKDTree thread inside):
    every search gives exactly what one thread gives, in the same order."""
    g = torch.Generator().manual_seed(0)
    sizes = [300, 1, 0, 257, 500]
    pos = torch.rand(sum(sizes), 3, generator=g)
    pos[700:710] = pos[700]  # duplicates: ties resolved the same way
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    queries = pos[::3]
    batch_q = batch[::3]
    calls = [lambda: knn_graph(pos, 8, batch), lambda: radius_graph(pos, 0.1, batch),
             lambda: knn(pos, queries, 5, batch, batch_q),
             lambda: radius(pos, queries, 0.15, batch, batch_q, max_num_neighbors=7)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = [f() for f in calls]
        torch.set_num_threads(2)
        parallel = [f() for f in calls]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)


def test_kd_tree_stays_on_one_thread_inside_pool_threads():
    from geo3d._threads import for_row_ranges

    seen = []
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for_row_ranges(lambda a, b: seen.append(_nn_scipy._workers(1 << 20, 32)), 2, 2)
    finally:
        torch.set_num_threads(threads)
    assert seen == [1, 1] and _nn_scipy._workers(1 << 20, 32) == -1
