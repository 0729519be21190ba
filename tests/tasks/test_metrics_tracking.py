"""Tracking metrics: hand cases, motmetrics cross-checks, HOTA against a 2D reference."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.tasks.metrics.hota import hota
from geo3d.tasks.metrics.tracking import evaluate_tracking


def _frame(xs, ids, labels=None, scores=None, y=None, dtype=torch.float32):
    n = len(xs)
    b = torch.zeros(n, 7, dtype=dtype)
    b[:, 0] = torch.tensor(xs, dtype=dtype)
    if y is not None:
        b[:, 1] = torch.tensor(y, dtype=dtype)
    b[:, 3:6] = torch.tensor([4.0, 2.0, 1.5], dtype=dtype)
    d = Data(boxes=b, track_id=torch.tensor(ids, dtype=torch.long).reshape(-1),
             box_labels=torch.tensor(labels if labels is not None else [0] * n, dtype=torch.long).reshape(-1))
    if scores is not None:
        d.box_scores = torch.tensor(scores, dtype=torch.float32)
    return d


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_perfect_tracking(dtype):
    gt = [_frame([10.0 * i + t for i in range(3)], [0, 1, 2], [0, 0, 1], dtype=dtype) for t in range(8)]
    pr = [_frame([10.0 * i + t for i in range(3)], [5, 6, 7], [0, 0, 1],
                 [0.9 - 0.01 * t - 0.001 * i for i in range(3)], dtype=dtype) for t in range(8)]
    for match in ("center", "iou_3d"):
        m = evaluate_tracking(pr, gt, match=match, class_names=["car", "pedestrian"])
        for key in ("MOTA", "IDF1", "HOTA", "DetA", "AssA", "LocA", "sAMOTA", "recall", "precision"):
            assert m[key] == pytest.approx(1.0), key
        assert m["MOTP"] == pytest.approx(0.0, abs=1e-6) and m["IDSW"] == 0 and m["FRAG"] == 0
        assert set(m["per_class"]) == {"car", "pedestrian"}
        assert m["num_targets"] == 24 and m["num_target_tracks"] == 3
        # AB3DMOT's AMOTA of a perfect tracker with distinct scores: mean over r of the
        # recall reached at the threshold for r, ceil(r n) / n.
        for name, n in (("car", 16), ("pedestrian", 8)):
            want = np.mean([math.ceil(r * n - 1e-9) / n for r in np.linspace(1 / 40, 1, 40)])
            assert m["per_class"][name]["AMOTA"] == pytest.approx(want)
        assert m["AMOTA"] == pytest.approx(np.mean([m["per_class"][c]["AMOTA"] for c in ("car", "pedestrian")]))


def test_hand_counted_errors():
    """One target over 6 frames; the prediction misses frame 2, switches id at frame 4,
    and adds a far false positive in frame 5; a wrong-class box never matches."""
    gt = [_frame([0.0], [1]) for _ in range(6)]
    pr = []
    for t in range(6):
        if t == 2:
            pr.append(_frame([], []))
        elif t == 5:
            pr.append(_frame([0.5, 50.0], [8, 9]))
        else:
            pr.append(_frame([0.5], [7 if t < 4 else 8]))
    pr[0] = _frame([0.5, 0.0], [7, 3], labels=[0, 1])  # class 1 box on top of the target
    m = evaluate_tracking(pr, gt, amota=False, class_names=["car", "pedestrian"])
    assert (m["FN"], m["FP"], m["IDSW"], m["TP"]) == (1, 2, 1, 5)  # FP: frame 5 + wrong class
    assert m["MOTA"] == pytest.approx(1 - (1 + 2 + 1) / 6)
    assert m["MOTP"] == pytest.approx(0.5)
    assert m["FRAG"] == 1  # tracked, lost at frame 2, tracked again
    # IDF1: id 7 covers frames 0, 1, 3 -> IDTP 3, IDFN 3; IDFP = 7 predicted boxes - 3
    assert m["IDF1"] == pytest.approx(2 * 3 / (2 * 3 + 4 + 3))
    # A larger gate turns nothing more into matches; a tiny one loses all of them.
    assert evaluate_tracking(pr, gt, amota=False, max_distance=0.4)["TP"] == 0
    m_iou = evaluate_tracking(pr, gt, amota=False, match="iou_3d", min_iou=0.5)
    assert m_iou["TP"] == 5 and m_iou["MOTP"] == pytest.approx(1 - 3.5 / 4.5)  # IoU of 0.5 m shift


def test_sweep_counts_agree_with_motmetrics_compute():
    """The AMOTA sweep counts MOTA/MOTP from motmetrics' events; motmetrics' own compute
    must give the same numbers."""
    import motmetrics as mm

    from geo3d.tasks.metrics.tracking import _Frame, _clear, _clear_metrics, _distances

    rng = np.random.default_rng(0)
    frames, acc = [], mm.MOTAccumulator(auto_id=False)
    for t in range(15):
        gx = rng.uniform(0, 20, 6)
        keep = rng.random(6) > 0.2
        px = np.concatenate([gx[keep] + rng.normal(0, 0.8, keep.sum()), rng.uniform(0, 20, 2)])
        pid = np.concatenate([np.nonzero(keep)[0] + 10 * (t // 5), [100 + 2 * t, 101 + 2 * t]])
        p = _Frame(_frame(px.tolist(), pid.tolist(), scores=rng.random(len(px)).tolist()), "p", True)
        g = _Frame(_frame(gx.tolist(), list(range(6))), "g", False)
        dist, _ = _distances(p, g, "center", 2.0)
        frames.append((p, g, dist))
        acc.update(list(range(6)), pid.tolist(), dist, frameid=t)
    ours = _clear_metrics(_clear([frames], full=False)[0])
    ref = mm.metrics.create().compute(acc, metrics=["mota", "motp", "num_switches"], return_dataframe=False)
    assert ours["MOTA"] == pytest.approx(ref["mota"])
    assert ours["MOTP"] == pytest.approx(ref["motp"])
    assert ours["IDSW"] == ref["num_switches"] > 0


def test_amota_thresholds_on_scores():
    """Two targets, 4 frames. High-score predictions track target A; target B is only hit
    by low-score boxes, and low-score false positives sit far away."""
    gt = [_frame([0.0, 20.0], [1, 2]) for _ in range(4)]
    pr = [_frame([0.0, 20.0, 60.0], [5, 6, 7], scores=[0.9, 0.3, 0.2]) for _ in range(4)]
    m = evaluate_tracking(pr, gt, num_recall_points=4)
    # r = 0.25, 0.5: threshold 0.9 -> A only: MOTA = 1 - 4/8 = 0.5 at both.
    # r = 0.75, 1.0: threshold 0.3 -> A and B: MOTA = 1. (FP at 0.2 excluded.)
    assert m["AMOTA"] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    assert m["sAMOTA"] == pytest.approx((1 + 1 + 1 + 1) / 4)
    assert m["MOTA"] == pytest.approx(1 - 4 / 8)  # unthresholded: 4 false positives
    nus = evaluate_tracking(pr, gt, num_recall_points=4, min_recall=0.5)
    assert nus["sAMOTA"] == pytest.approx(1.0)


def _iou_2d(a, b):
    """Axis-aligned rectangles (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _hota_2d_reference(gt_frames, pr_frames):
    """HOTA of 2D axis-aligned boxes, written from the paper's definitions with loops."""
    sims = []
    gcount, pcount = defaultdict(int), defaultdict(int)
    pot = defaultdict(float)
    for g, p in zip(gt_frames, pr_frames):
        s = np.array([[_iou_2d(gb, pb) for pb, _ in p] for gb, _ in g]).reshape(len(g), len(p))
        sims.append(s)
        for _, gi in g:
            gcount[gi] += 1
        for _, pi in p:
            pcount[pi] += 1
        for i, (_, gi) in enumerate(g):
            for j, (_, pi) in enumerate(p):
                den = s[:, j].sum() + s[i, :].sum() - s[i, j]
                if den > 0:
                    pot[gi, pi] += s[i, j] / den
    align = {k: v / (gcount[k[0]] + pcount[k[1]] - v) for k, v in pot.items()}
    values = defaultdict(list)
    for alpha in np.arange(0.05, 0.99, 0.05):
        tp, loc, pair = 0, 0.0, defaultdict(int)
        for (g, p), s in zip(zip(gt_frames, pr_frames), sims):
            if s.size == 0:
                continue
            score = np.array([[align.get((gi, pi), 0.0) * s[i, j] for j, (_, pi) in enumerate(p)]
                              for i, (_, gi) in enumerate(g)])
            for i, j in zip(*linear_sum_assignment(-score)):
                if s[i, j] >= alpha - 1e-12:
                    tp += 1
                    loc += s[i, j]
                    pair[g[i][1], p[j][1]] += 1
        ngt, npr = sum(gcount.values()), sum(pcount.values())
        det = tp / max(1, ngt + npr - tp)
        ass = sum(n * n / (gcount[a] + pcount[b] - n) for (a, b), n in pair.items()) / max(1, tp)
        values["HOTA"].append(math.sqrt(det * ass))
        values["DetA"].append(det)
        values["AssA"].append(ass)
        values["LocA"].append(loc / tp if tp else 1.0)
    return {k: float(np.mean(v)) for k, v in values.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hota_3d_matches_2d_reference(seed):
    """Boxes with yaw 0, equal z and height: 3D IoU == 2D IoU of the footprints."""
    rng = np.random.default_rng(seed)
    n_obj, n_frames = 5, 12
    start = rng.uniform(0, 12, (n_obj, 2))
    size = rng.uniform(1, 4, (n_obj, 2))
    gt_2d, pr_2d, gt, pr = [], [], [], []
    for t in range(n_frames):
        present = rng.random(n_obj) > 0.15
        centres = start + 0.3 * t
        g2, p2, gb, pb, gid, pid = [], [], [], [], [], []
        for i in np.nonzero(present)[0]:
            c, s = centres[i], size[i]
            g2.append(((c[0] - s[0] / 2, c[1] - s[1] / 2, c[0] + s[0] / 2, c[1] + s[1] / 2), int(i)))
            gb.append([c[0], c[1], 0.5, s[0], s[1], 1.0, 0.0])
            gid.append(int(i))
            if rng.random() < 0.85:
                q = c + rng.normal(0, 0.3, 2)
                qs = s * rng.uniform(0.8, 1.2, 2)
                track = int(i) + (100 if t > 6 and i % 2 else 0)  # id switches for odd objects
                p2.append(((q[0] - qs[0] / 2, q[1] - qs[1] / 2, q[0] + qs[0] / 2, q[1] + qs[1] / 2), track))
                pb.append([q[0], q[1], 0.5, qs[0], qs[1], 1.0, 0.0])
                pid.append(track)
        if rng.random() < 0.5:  # a false positive
            q = rng.uniform(0, 15, 2)
            p2.append(((q[0] - 1, q[1] - 1, q[0] + 1, q[1] + 1), 500 + t))
            pb.append([q[0], q[1], 0.5, 2.0, 2.0, 1.0, 0.0])
            pid.append(500 + t)
        gt_2d.append(g2)
        pr_2d.append(p2)
        gt.append(Data(boxes=torch.tensor(gb, dtype=torch.float64).reshape(-1, 7), track_id=torch.tensor(gid)))
        pr.append(Data(boxes=torch.tensor(pb, dtype=torch.float64).reshape(-1, 7),
                       track_id=torch.tensor(pid, dtype=torch.long)))
    ref = _hota_2d_reference(gt_2d, pr_2d)
    got = evaluate_tracking(pr, gt, amota=False)
    for key in ("HOTA", "DetA", "AssA", "LocA"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9), key
    assert 0 < got["HOTA"] < 1


def test_hota_hand_cases():
    # The HOTA paper's point: an id switch halfway through halves AssA, DetA stays 1.
    frames = [(np.array([1]), np.array([7 if t < 5 else 8]), np.array([[1.0]])) for t in range(10)]
    out = hota(frames)
    assert out["DetA"] == 1 and out["AssA"] == pytest.approx(0.5) and out["HOTA"] == pytest.approx(math.sqrt(0.5))
    assert out["AssRe"] == pytest.approx(0.5) and out["AssPr"] == 1
    # Half the frames detected, one id: DetA = 0.5, AssA = 5 / 10.
    frames = [(np.array([1]), np.array([7]) if t < 5 else np.zeros(0, int),
               np.ones((1, 1 if t < 5 else 0))) for t in range(10)]
    out = hota(frames)
    assert out["DetA"] == pytest.approx(0.5) and out["AssA"] == pytest.approx(0.5)
    # A similarity of 0.5 is a TP for the alphas <= 0.5 only (10 of 19).
    out = hota([(np.array([1]), np.array([2]), np.array([[0.5]]))])
    assert out["DetA"] == pytest.approx(10 / 19) and out["LocA"] == pytest.approx((10 * 0.5 + 9) / 19)


def test_several_sequences_and_empty_frames():
    seq = [_frame([0.0, 10.0], [1, 2]) for _ in range(3)] + [_frame([], [])]
    m = evaluate_tracking([seq, seq], [seq, seq], amota=False)
    assert m["MOTA"] == 1 and m["num_targets"] == 12 and m["num_target_tracks"] == 4
    empty = evaluate_tracking([_frame([], [])], [_frame([], [])], amota=False)
    assert math.isnan(empty["MOTA"]) and empty["per_class"] == {}


def test_bad_input():
    f = _frame([0.0], [1])
    with pytest.raises(InvalidInputError, match="frames"):
        evaluate_tracking([f, f], [f])
    with pytest.raises(InvalidInputError, match="track_id"):
        evaluate_tracking([Data(boxes=torch.zeros(1, 7))], [f])
    with pytest.raises(InvalidInputError, match="repeats"):
        evaluate_tracking([_frame([0.0, 5.0], [1, 1])], [f])
    with pytest.raises(InvalidInputError, match="match"):
        evaluate_tracking([f], [f], match="iou_2d")
    with pytest.raises(InvalidInputError, match="max_distance"):
        evaluate_tracking([f], [f], max_distance=-1.0)
    with pytest.raises(InvalidInputError, match="box_scores"):
        bad = _frame([0.0], [1])
        bad.box_scores = torch.ones(2)
        evaluate_tracking([bad], [f])
    with pytest.raises(InvalidInputError, match="list"):
        evaluate_tracking(f, [f])
