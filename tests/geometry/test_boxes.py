"""Tests of geo3d.geometry.boxes against shapely (float64) and numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo3d.errors import InvalidInputError
from geo3d.geometry import _box_overlap, boxes as boxes_mod
from geo3d.geometry.boxes import (
    box_corners,
    box_iou_3d,
    box_iou_bev,
    box_volume,
    nms_bev,
    points_in_boxes,
)

DTYPES = [torch.float32, torch.float64]
SIGNS = np.array(
    [[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1],
     [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]], dtype=np.float64
)  # fmt: skip


def _t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype).reshape(-1, 7)


# --------------------------------------------------------------------------- references


def _rot(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _np_corners(b):
    """Direct construction: R(yaw) @ (signs * half sizes) + centre, float64."""
    b = np.asarray(b, dtype=np.float64).reshape(-1, 7)
    out = np.empty((len(b), 8, 3))
    for k, row in enumerate(b):
        local = SIGNS * row[3:6] / 2
        out[k] = local @ _rot(row[6]).T + row[:3]
    return out


def _polys(b):
    return shapely.polygons(_np_corners(b)[:, :4, :2])


def _ref_iou(a, b, three_d):
    a = np.asarray(a, dtype=np.float64).reshape(-1, 7)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 7)
    inter = shapely.area(shapely.intersection(_polys(a)[:, None], _polys(b)[None, :]))
    size_a, size_b = a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]
    if three_d:
        top = np.minimum((a[:, 2] + a[:, 5] / 2)[:, None], (b[:, 2] + b[:, 5] / 2)[None])
        bot = np.maximum((a[:, 2] - a[:, 5] / 2)[:, None], (b[:, 2] - b[:, 5] / 2)[None])
        inter = inter * np.clip(top - bot, 0, None)
        size_a, size_b = size_a * a[:, 5], size_b * b[:, 5]
    union = size_a[:, None] + size_b[None] - inter
    degenerate = (size_a[:, None] == 0) | (size_b[None] == 0)
    return np.where(degenerate | (union <= 0), 0.0, inter / np.where(union > 0, union, 1))


def _ref_points_in_boxes(pos, b, tol=1e-9):
    pos = np.asarray(pos, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 7)
    out = np.full(len(pos), -1)
    for k in range(len(b) - 1, -1, -1):  # lowest index wins: write it last
        local = (pos - b[k, :3]) @ _rot(b[k, 6])  # = R^T (p - c) row-wise
        inside = np.all(np.abs(local) <= b[k, 3:6] / 2 + tol, axis=1)
        out[inside] = k
    return out


# --------------------------------------------------------------------------- strategies

coord = st.floats(-5, 5, allow_nan=False)
size = st.one_of(st.floats(0.05, 6, allow_nan=False), st.just(0.0))
yaw = st.floats(-7, 7, allow_nan=False)


@st.composite
def box(draw, pos=coord, sizes=size):
    return [draw(pos), draw(pos), draw(pos), draw(sizes), draw(sizes), draw(sizes), draw(yaw)]


@st.composite
def box_pairs(draw):
    """Two box sets; b mixes random, near-identical, nested and far-apart boxes of a."""
    a = draw(st.lists(box(), min_size=1, max_size=5))
    b = []
    for _ in range(draw(st.integers(1, 6))):
        src = np.array(draw(st.sampled_from(a)))
        mode = draw(st.sampled_from(["random", "near", "nested", "far", "same"]))
        if mode == "random":
            b.append(draw(box()))
        elif mode == "same":
            b.append(list(src))
        elif mode == "near":
            scale = draw(st.sampled_from([1e-6, 1e-4, 1e-2]))
            noise = draw(st.lists(st.floats(-1, 1), min_size=7, max_size=7))
            row = src + scale * np.array(noise)
            row[3:6] = np.abs(row[3:6])
            b.append(list(row))
        elif mode == "nested":
            f = draw(st.floats(0.1, 0.9))
            u = draw(st.lists(st.floats(-1, 1), min_size=2, max_size=2))
            slack = (1 - f) / 2 * src[3:5] * np.array(u) * 0.99
            off = _rot(src[6])[:2, :2] @ slack
            row = src.copy()
            row[:2] += off
            row[3:6] *= f
            b.append(list(row))
        else:
            row = src.copy()
            row[:2] += draw(st.sampled_from([20.0, -30.0]))
            b.append(list(row))
    return np.array(a), np.array(b)


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- box_corners


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_corners_against_numpy(dtype):
    rng = np.random.default_rng(0)
    b = np.concatenate(
        [rng.uniform(-50, 50, (20, 3)), rng.uniform(0.1, 5, (20, 3)), rng.uniform(-7, 7, (20, 1))],
        1,
    )
    bt = torch.tensor(b, dtype=dtype)
    got = box_corners(bt)
    assert got.shape == (20, 8, 3) and got.dtype == dtype
    ref = _np_corners(bt.double().numpy())
    atol = 1e-4 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(got.double().numpy(), ref, atol=atol)
    # In the box frame the corners sit at +-half extents, in the documented order.
    b64 = bt.double().numpy()
    for k in range(20):
        local = (got[k].double().numpy() - b64[k, :3]) @ _rot(b64[k, 6])
        np.testing.assert_allclose(local, SIGNS * b64[k, 3:6] / 2, atol=atol)


def test_box_corners_order_documented():
    c = box_corners(_t([1, 2, 3, 4, 2, 6, 0]))[0]
    assert c[0].tolist() == [3, 3, 0]  # front-left bottom
    assert c[2].tolist() == [-1, 1, 0]  # rear-right bottom
    assert torch.equal(c[4:, :2], c[:4, :2]) and bool((c[4:, 2] == 6).all())
    # Bottom face counter-clockwise seen from +z: positive shoelace area.
    x, y = c[:4, 0], c[:4, 1]
    assert float((x * y.roll(-1) - x.roll(-1) * y).sum()) / 2 == pytest.approx(8.0)
    assert box_corners(torch.zeros(0, 7)).shape == (0, 8, 3)


def test_box_volume():
    assert box_volume(_t([[0, 0, 0, 2, 3, 4, 1], [0, 0, 0, 0, 3, 4, 0]])).tolist() == [24, 0]


# --------------------------------------------------------------------------- IoU vs shapely


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(pair=box_pairs())
def test_iou_matches_shapely(dtype, pair):
    a, b = (torch.tensor(x, dtype=dtype) for x in pair)
    a64, b64 = a.double().numpy(), b.double().numpy()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-11)
    bev, iou3 = box_iou_bev(a, b), box_iou_3d(a, b)
    assert bev.dtype == dtype and bev.shape == (len(a), len(b))
    np.testing.assert_allclose(bev.double().numpy(), _ref_iou(a64, b64, False), **tol)
    np.testing.assert_allclose(iou3.double().numpy(), _ref_iou(a64, b64, True), **tol)
    # Symmetry.
    np.testing.assert_allclose(box_iou_bev(b, a).T.numpy(), bev.numpy(), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(a=box(sizes=st.floats(0.05, 6)), b=box(sizes=st.floats(0.05, 6)))
def test_iou_yaw_wrapping_and_quarter_turn(dtype, a, b):
    a, b = torch.tensor([a], dtype=dtype), torch.tensor([b], dtype=dtype)
    variants = b.repeat(4, 1)
    variants[1, 6] += 2 * math.pi
    variants[2, 6] += math.pi
    variants[3, 3], variants[3, 4] = b[0, 4], b[0, 3]  # swap l, w and turn by 90 degrees
    variants[3, 6] += math.pi / 2
    atol = 2e-5 if dtype == torch.float32 else 1e-11
    for f in (box_iou_bev, box_iou_3d):
        iou = f(a, variants)[0]
        np.testing.assert_allclose(iou.numpy(), iou[0].item(), atol=atol)
        np.testing.assert_allclose(f(b, variants)[0].numpy(), 1.0, atol=atol)


# Pairs in general position and on the edge of degenerate (shared edges and corners,
# touching, nested against an edge, quarter turns, nearly parallel), with their BEV IoU.
RIGID_CASES = [
    ([0, 0, 0, 1, 1, 1, 0], [0.5, 0, 0, 1, 1, 1, 0], 1 / 3),
    ([0, 0, 0, 1, 1, 1, 0], [1, 0, 0, 1, 1, 1, 0], 0.0),
    ([0, 0, 0, 1, 1, 1, 0], [1, 1, 0, 1, 1, 1, 0], 0.0),
    ([0, 0, 0, 1, 1, 1, 0], [0, -0.25, 0, 1, 0.5, 1, 0], 0.5),
    ([0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 0], 1.0),
    ([0, 0, 0, 2, 1, 1, 0], [0, 0, 0, 1, 2, 1, math.pi / 2], 1.0),
    ([0, 0, 0, 1, 1, 1, 0], [0.5 + math.sqrt(0.5), 0, 0, 1, 1, 1, math.pi / 4], 0.0),
    ([0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, math.pi / 4], 1 / math.sqrt(2)),
    ([0, 0, 0, 2, 2, 1, 0], [0.5, 0.5, 0, 1, 1, 1, math.pi], 0.25),
    ([0, 0, 0, 3, 1, 1, 0], [0, 1, 0, 3, 1, 1, 0], 0.0),
    ([0, 0, 0, 3, 1, 1, 0], [1, 0, 0, 3, 1, 1, 0], 0.5),
    ([0, 0, 0, 3, 1, 1, 0], [0, 0.5, 0, 3, 1, 1, 1e-7], None),
    ([0, 0, 0, 3, 1, 1, 0], [1.5, 0.5, 0, 1, 1, 1, 0.3], None),
]


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(
    theta=st.floats(-10, 10),
    shift=st.tuples(st.floats(-50, 50), st.floats(-50, 50)),
    scale=st.floats(0.5, 20),
)
def test_iou_invariant_under_rigid_motion(dtype, theta, shift, scale):
    """IoU of near-degenerate configurations survives rotation, translation, scaling."""
    a0 = np.array([c[0] for c in RIGID_CASES], dtype=np.float64)
    b0 = np.array([c[1] for c in RIGID_CASES], dtype=np.float64)
    want = np.diag(_ref_iou(a0, b0, False))
    known = np.array([np.nan if c[2] is None else c[2] for c in RIGID_CASES])
    np.testing.assert_allclose(want[~np.isnan(known)], known[~np.isnan(known)], atol=1e-12)

    def move(x):
        x = x.copy()
        x[:, :6] *= scale
        x[:, :3] = x[:, :3] @ _rot(theta).T + [shift[0], shift[1], 0.0]
        x[:, 6] += theta
        return torch.tensor(x, dtype=dtype)

    a, b = move(a0), move(b0)
    atol = 1e-4 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(box_iou_bev(a, b).diagonal().numpy(), want, atol=atol)
    np.testing.assert_allclose(box_iou_bev(b, a).diagonal().numpy(), want, atol=atol)


# --------------------------------------------------------------------------- IoU hand cases


@pytest.mark.parametrize("dtype", DTYPES)
def test_iou_hand_cases(dtype):
    unit = [0, 0, 0, 1, 1, 1, 0]
    a = _t(unit, dtype)
    cases = {
        "half_shift": ([0.5, 0, 0, 1, 1, 1, 0], 1 / 3, 1 / 3),
        "identical": (unit, 1.0, 1.0),
        "touch_face": ([1, 0, 0, 1, 1, 1, 0], 0.0, 0.0),
        "touch_corner_rot": ([0.5 + math.sqrt(0.5), 0, 0, 1, 1, 1, math.pi / 4], 0.0, 0.0),
        "touch_top": ([0, 0, 1, 1, 1, 1, 0.3], None, 0.0),
        "nested": ([0.2, -0.1, 0, 0.5, 0.25, 0.5, 0], 0.125, 0.0625),
        # |x| + |y| <= sqrt(2)/2 cut from the unit square: octagon 2 sqrt 2 - 2.
        "octagon": ([0, 0, 0, 1, 1, 1, math.pi / 4], 1 / math.sqrt(2), 1 / math.sqrt(2)),
        "quarter_turn": ([0, 0, 0, 1, 1, 1, math.pi / 2], 1.0, 1.0),
        "z_offset": ([0, 0, 0.5, 1, 1, 1, 0], 1.0, 1 / 3),
        "far": ([100, -40, 0, 1, 1, 1, 0], 0.0, 0.0),
        "zero_size": ([0, 0, 0, 0, 1, 1, 0], 0.0, 0.0),
        "zero_height": ([0, 0, 0, 1, 1, 0, 0], 1.0, 0.0),
        "sliver": ([0.999, 0, 0, 1, 1, 1, 0], 0.001 / 1.999, 0.001 / 1.999),
    }
    b = _t([c[0] for c in cases.values()], dtype)
    bev, iou3 = box_iou_bev(a, b)[0], box_iou_3d(a, b)[0]
    atol = 1e-6 if dtype == torch.float32 else 1e-14
    assert bev[-1].item() > 0 and iou3[-1].item() > 0  # tiny overlaps are not snapped away
    for k, (name, (_, want_bev, want_3d)) in enumerate(cases.items()):
        if want_bev is not None:
            assert bev[k].item() == pytest.approx(want_bev, abs=atol), name
        assert iou3[k].item() == pytest.approx(want_3d, abs=atol), name
    # Exact values where they matter for thresholds: touching 0, identical 1.
    for name in ("identical", "quarter_turn"):
        assert bev[list(cases).index(name)].item() == 1.0, name
    for name in ("touch_face", "touch_corner_rot", "touch_top", "far", "zero_size"):
        assert iou3[list(cases).index(name)].item() == 0.0, name
    # Degenerate boxes: IoU 0 even with themselves, never NaN.
    z = _t([[0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 2, 0, 1, 0.5]], dtype)
    assert box_iou_bev(z, z).abs().sum().item() == 0 and box_iou_3d(z, z).abs().sum().item() == 0


def test_iou_nested_large_coordinates_and_exact_ratio():
    a = _t([[1000.0, -2000.0, 5, 4, 2, 2, 0.3]])
    b = _t([[1000.5, -2000.2, 5, 1, 0.5, 1, 0.3 + 2 * math.pi]])
    # b lies inside a (offset rotated by the same yaw is within the slack).
    assert box_iou_bev(a, b).item() == pytest.approx(0.5 / 8, rel=1e-12)
    assert box_iou_3d(a, b).item() == pytest.approx(0.5 / 16, rel=1e-12)
    assert box_iou_bev(a.float(), b.float()).item() == pytest.approx(0.5 / 8, rel=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_iou_empty_and_dtype(dtype):
    a, e = _t([[0, 0, 0, 1, 1, 1, 0]] * 3, dtype), torch.zeros(0, 7, dtype=dtype)
    for f in (box_iou_bev, box_iou_3d):
        assert f(e, a).shape == (0, 3) and f(a, e).shape == (3, 0) and f(e, e).shape == (0, 0)
        assert f(a, a).dtype == dtype and f(a, a).device == a.device
    half = box_iou_bev(a.half(), a.half())
    assert half.dtype == torch.float16 and bool((half == 1).all())


def test_iou_chunked_equals_single_block(monkeypatch):
    rng = np.random.default_rng(1)
    n = 60
    b = np.concatenate(
        [rng.uniform(-4, 4, (n, 3)), rng.uniform(0.5, 3, (n, 3)), rng.uniform(-4, 4, (n, 1))], 1
    )
    bt = torch.tensor(b)
    full_bev, full_3d = box_iou_bev(bt, bt), box_iou_3d(bt, bt)
    np.testing.assert_allclose(full_bev.numpy(), _ref_iou(b, b, False), atol=1e-10)
    monkeypatch.setattr(_box_overlap, "BLOCK_ELEMS", 7)
    monkeypatch.setattr(_box_overlap, "PAIR_CHUNK", 5)
    # Chunks change the reduction order only: equal to the last ulp or two.
    torch.testing.assert_close(box_iou_bev(bt, bt), full_bev, rtol=0, atol=1e-14)
    torch.testing.assert_close(box_iou_3d(bt, bt), full_3d, rtol=0, atol=1e-14)


def test_iou_large_runs_bounded():
    # 2000 x 2000 boxes packed so that many pairs overlap: chunked, finite, symmetric.
    g = torch.Generator().manual_seed(0)
    n = 2000
    b = torch.cat(
        [torch.rand(n, 2, generator=g) * 40, torch.zeros(n, 1),
         1 + 3 * torch.rand(n, 3, generator=g), torch.rand(n, 1, generator=g) * 6.3],
        1,
    )  # fmt: skip
    iou = box_iou_bev(b, b)
    assert iou.shape == (n, n) and bool(torch.isfinite(iou).all())
    assert bool((iou.diagonal() == 1).all())
    sub = [0, 5, 17, 123, 999, 1500]
    ref = _ref_iou(b[sub].double().numpy(), b.double().numpy(), False)
    np.testing.assert_allclose(iou[sub].double().numpy(), ref, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "bad, match",
    [
        ([[0, 0, 0, 1, 1, 1, 0]], "must be a torch.Tensor"),
        (torch.zeros(3, 6), r"shape \[N, 7\]"),
        (torch.zeros(7), r"shape \[N, 7\]"),
        (torch.zeros(2, 7, dtype=torch.long), "floating-point"),
        (torch.tensor([[0, 0, float("nan"), 1, 1, 1, 0]]), "NaN or Inf"),
        (torch.tensor([[0, 0, 0, 1, 1, 1, float("inf")]]), "NaN or Inf"),
        (torch.tensor([[0, 0, 0, 1, -1, 1, 0.0]]), "negative sizes"),
    ],
)
def test_invalid_boxes(bad, match):
    good = torch.zeros(1, 7)
    for f, name in ((lambda x: box_iou_bev(x, good), "boxes_a"),
                    (lambda x: box_iou_3d(good, x), "boxes_b"),
                    (box_corners, "boxes"), (box_volume, "boxes"),
                    (lambda x: nms_bev(x, torch.ones(1), 0.5), "boxes"),
                    (lambda x: points_in_boxes(torch.zeros(2, 3), x), "boxes")):  # fmt: skip
        with pytest.raises(InvalidInputError, match=f"{name}.*{match}"):
            f(bad)


def test_invalid_other_arguments():
    b = torch.zeros(2, 7)
    with pytest.raises(InvalidInputError, match="boxes_a .* boxes_b .* dtype"):
        box_iou_bev(b, b.double())
    with pytest.raises(InvalidInputError, match="scores must have shape"):
        nms_bev(b, torch.ones(3), 0.5)
    with pytest.raises(InvalidInputError, match="scores must be a torch.Tensor"):
        nms_bev(b, [1.0, 2.0], 0.5)
    with pytest.raises(InvalidInputError, match="scores contains NaN"):
        nms_bev(b, torch.tensor([1.0, float("nan")]), 0.5)
    for thr in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(InvalidInputError, match="iou_threshold"):
            nms_bev(b, torch.ones(2), thr)
    with pytest.raises(InvalidInputError, match="pos"):
        points_in_boxes(torch.zeros(2, 2), b)
    with pytest.raises(InvalidInputError, match="pos"):
        points_in_boxes(torch.tensor([[0.0, float("nan"), 0]]), b)
    with pytest.raises(InvalidInputError, match="pos .* boxes .* dtype"):
        points_in_boxes(torch.zeros(2, 3, dtype=torch.float64), b)


def test_inputs_not_mutated():
    b = _t([[0, 0, 0, 1, 1, 1, 7.0], [0.2, 0, 0, 1, 2, 1, -3.0]])
    copy = b.clone()
    box_iou_bev(b, b), box_iou_3d(b, b), box_corners(b), nms_bev(b, torch.ones(2), 0.1)
    points_in_boxes(torch.zeros(4, 3, dtype=torch.float64), b)
    assert torch.equal(b, copy)


# --------------------------------------------------------------------------- NMS


def test_nms_hand_cases():
    unit = [0, 0, 0, 1, 1, 1, 0]
    # Duplicate suppressed by the higher score, disjoint box kept, order by score.
    b = _t([unit, unit, [5, 5, 0, 1, 1, 1, 0.3]])
    assert nms_bev(b, torch.tensor([0.5, 0.9, 0.7]), 0.5).tolist() == [1, 2]
    # Ties: lower index first, and it suppresses the later one.
    assert nms_bev(b, torch.tensor([0.7, 0.7, 0.7]), 0.5).tolist() == [0, 2]
    assert nms_bev(b, torch.tensor([1, 3, 3]), 0.5).tolist() == [1, 2]  # integer scores
    # Threshold boundary: IoU exactly 0.5 (nested half box) is not > 0.5.
    h = _t([unit, [0, -0.25, 0, 1, 0.5, 1, 0]])
    assert box_iou_bev(h, h)[0, 1].item() == 0.5
    assert nms_bev(h, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert nms_bev(h, torch.tensor([1.0, 0.5]), 0.4999).tolist() == [0]
    # Threshold 0: touching boxes (IoU exactly 0) both kept; threshold 1 keeps duplicates.
    t = _t([unit, [1, 0, 0, 1, 1, 1, 0], [0.5 + math.sqrt(0.5), 0, 0, 1, 1, 1, math.pi / 4]])
    assert nms_bev(t[:2], torch.tensor([0.1, 0.2]), 0.0).tolist() == [1, 0]
    assert nms_bev(t[[0, 2]], torch.tensor([0.1, 0.2]), 0.0).tolist() == [1, 0]
    assert nms_bev(t, torch.tensor([0.1, 0.2, 0.3]), 0.0).tolist() == [2, 0]  # 2 overlaps 1
    assert nms_bev(b, torch.ones(3), 1.0).tolist() == [0, 1, 2]
    # Chain: A suppresses B, so C (overlapping B only) survives.
    c = _t([[0, 0, 0, 1, 1, 1, 0], [0.6, 0, 0, 1, 1, 1, 0], [1.2, 0, 0, 1, 1, 1, 0]])
    assert nms_bev(c, torch.tensor([3.0, 2.0, 1.0]), 0.2).tolist() == [0, 2]
    empty = nms_bev(torch.zeros(0, 7), torch.zeros(0), 0.5)
    assert empty.dtype == torch.long and empty.shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_against_reference_greedy(dtype):
    rng = np.random.default_rng(2)
    n = 80
    b = np.concatenate(
        [rng.uniform(-6, 6, (n, 2)), np.zeros((n, 1)), rng.uniform(0.5, 3, (n, 3)),
         rng.uniform(-4, 4, (n, 1))], 1,
    )  # fmt: skip
    scores = rng.integers(0, 20, n).astype(np.float64)  # many ties
    bt = torch.tensor(b, dtype=dtype)
    iou = _ref_iou(bt.double().numpy(), bt.double().numpy(), False)
    for thr in (0.1, 0.3, 0.7):
        order = sorted(range(n), key=lambda i: (-scores[i], i))
        keep = []
        for i in order:
            if all(iou[i, j] <= thr for j in keep):
                keep.append(i)
        got = nms_bev(bt, torch.tensor(scores, dtype=dtype), thr)
        assert got.tolist() == keep


# --------------------------------------------------------------------------- points in boxes


@pytest.mark.parametrize("dtype", DTYPES)
def test_points_in_boxes_against_numpy(dtype, monkeypatch):
    rng = np.random.default_rng(3)
    k = 12
    b = np.concatenate(
        [rng.uniform(-5, 5, (k, 3)), rng.uniform(0.5, 4, (k, 3)), rng.uniform(-7, 7, (k, 1))], 1
    )  # overlapping boxes included
    pos = rng.uniform(-8, 8, (5000, 3))
    bt, pt = torch.tensor(b, dtype=dtype), torch.tensor(pos, dtype=dtype)
    got = points_in_boxes(pt, bt)
    assert got.dtype == torch.long and got.shape == (5000,)
    ref = _ref_points_in_boxes(pt.double().numpy(), bt.double().numpy())
    assert (ref >= 0).sum() > 100
    # Float32 may only differ for points within rounding of a boundary.
    diff = got.numpy() != ref
    if dtype == torch.float32:
        loose = _ref_points_in_boxes(pt.double().numpy(), bt.double().numpy(), tol=1e-4)
        tight = _ref_points_in_boxes(pt.double().numpy(), bt.double().numpy(), tol=-1e-4)
        assert not (diff & (loose == tight)).any()
    else:
        assert not diff.any()
    # Lowest index wins where boxes overlap.
    multi = [i for i in range(5000) if ref[i] >= 0 and
             (_ref_points_in_boxes(pos[i : i + 1], b[ref[i] + 1 :]) >= 0).any()]  # fmt: skip
    assert len(multi) > 5
    # Chunking does not change the answer.
    monkeypatch.setattr(boxes_mod, "_POINT_BLOCK_ELEMS", 100)
    assert torch.equal(points_in_boxes(pt, bt), got)


@pytest.mark.parametrize("dtype", DTYPES)
def test_points_on_boundary_are_inside(dtype):
    b = torch.tensor(
        [[10.0, -20.0, 1.0, 4.0, 2.0, 1.5, 0.7], [0, 0, 0, 1, 1, 1, math.pi / 4],
         [30, 30, 2, 3, 1, 2, -2.5]], dtype=dtype,
    )  # fmt: skip
    corners = box_corners(b)  # [3, 8, 3]
    edge_mid = (corners + corners[:, [1, 2, 3, 0, 5, 6, 7, 4]]) / 2
    face_top = corners[:, 4:].mean(1, keepdim=True)
    pts = torch.cat([corners, edge_mid, face_top], 1)  # [3, 17, 3]
    got = points_in_boxes(pts.reshape(-1, 3), b).reshape(3, -1)
    assert (got == torch.arange(3)[:, None]).all()
    # Just outside (1 mm beyond each corner, away from the centre) is outside.
    out = b[:, None, :3] + (corners - b[:, None, :3]) * (1 + 1e-3)
    assert (points_in_boxes(out.reshape(-1, 3), b) == -1).all()


def test_points_in_boxes_shapely_footprint():
    rng = np.random.default_rng(4)
    b = np.array([[1.0, 2.0, 0.0, 3.0, 1.0, 100.0, 0.4], [-2.0, 0.0, 0.0, 2.0, 2.0, 100.0, 2.0]])
    pos = np.concatenate([rng.uniform(-4, 4, (2000, 2)), np.zeros((2000, 1))], 1)
    got = points_in_boxes(torch.tensor(pos), torch.tensor(b)).numpy()
    polys = _polys(b)
    for k in range(2):
        covered = shapely.covers(polys[k], shapely.points(pos[:, :2]))
        assert np.array_equal(got == k, covered & ~np.isin(got, range(k)))


def test_points_in_boxes_empty_and_degenerate():
    b = _t([[0, 0, 0, 2, 2, 2, 0], [0, 0, 0, 0, 0, 0, 0]])
    assert points_in_boxes(torch.zeros(0, 3, dtype=torch.float64), b).shape == (0,)
    r = points_in_boxes(torch.zeros(3, 3, dtype=torch.float64), b[:0])
    assert r.tolist() == [-1, -1, -1] and r.dtype == torch.long
    # A zero-size box contains only its centre.
    p = torch.tensor([[0.0, 0, 0], [0, 0, 1e-3]], dtype=torch.float64)
    assert points_in_boxes(p, b[1:]).tolist() == [0, -1]


def test_points_in_boxes_lidar_scale():
    g = torch.Generator().manual_seed(5)
    pos = (torch.rand(131072, 3, generator=g) - 0.5) * torch.tensor([160.0, 160.0, 6.0])
    b = torch.cat(
        [(torch.rand(100, 2, generator=g) - 0.5) * 140, torch.zeros(100, 1),
         1 + 4 * torch.rand(100, 3, generator=g), torch.rand(100, 1, generator=g) * 6.3], 1,
    )  # fmt: skip
    got = points_in_boxes(pos, b)
    sub = slice(0, 131072, 13)
    ref = _ref_points_in_boxes(pos[sub].double().numpy(), b.double().numpy())
    assert (ref >= 0).sum() > 50
    assert (got[sub].numpy() != ref).sum() <= 2  # float32 boundary rounding only


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(6)
    b = torch.tensor(
        np.concatenate([rng.uniform(-3, 3, (50, 3)), rng.uniform(0.5, 3, (50, 3)),
                        rng.uniform(-4, 4, (50, 1))], 1), dtype=torch.float64,
    )  # fmt: skip
    bc = b.cuda()
    for f in (box_iou_bev, box_iou_3d):
        r = f(bc, bc)
        assert r.device.type == "cuda"
        np.testing.assert_allclose(r.cpu().numpy(), f(b, b).numpy(), atol=1e-10)
    s = torch.arange(50.0, dtype=torch.float64)
    assert torch.equal(nms_bev(bc, s.cuda(), 0.3).cpu(), nms_bev(b, s, 0.3))
    pos = torch.tensor(rng.uniform(-4, 4, (3000, 3)))
    assert torch.equal(points_in_boxes(pos.cuda(), bc).cpu(), points_in_boxes(pos, b))
