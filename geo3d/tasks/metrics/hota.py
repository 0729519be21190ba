"""HOTA (Luiten et al., "HOTA: A Higher Order Metric for Evaluating Multi-Object
Tracking", IJCV 2021) from per-frame similarity matrices, for any similarity in [0, 1].

TrackEval, the reference code, scores 2D boxes, masks and points only and is not a geo3d
dependency; this is the same algorithm written with numpy and scipy, so 3D boxes can be
scored with their 3D IoU (:func:`geo3d.tasks.metrics.tracking.evaluate_tracking` does).

For each localisation threshold ``alpha`` in ``0.05, 0.10, ..., 0.95``:

* matching: per frame, Hungarian on ``A(g, p) * S(g, p)`` (``S`` the similarity, ``A``
  the global alignment score of the two tracks, below); a matched pair counts as a TP
  when ``S >= alpha``;
* ``DetA = |TP| / (|TP| + |FN| + |FP|)``, ``DetRe = |TP| / (|TP| + |FN|)``,
  ``DetPr = |TP| / (|TP| + |FP|)``;
* ``AssA = mean over TPs c of |TPA(c)| / (|TPA(c)| + |FNA(c)| + |FPA(c)|)``: the number of
  frames where c's two tracks are matched to each other, over the frames where either is
  present minus those; AssRe and AssPr likewise with only FNA or only FPA;
* ``HOTA = sqrt(DetA * AssA)``; ``LocA`` = mean similarity of the TPs (1 with no TP).

The reported values are means over the 19 thresholds. ``A(g, p)`` is TrackEval's: the
summed "soft" match ``S / (sum_row + sum_col - S)`` over the frames, divided by the
frames where ``g`` or ``p`` is present. Several sequences are scored as one with track
ids made distinct per sequence, which is exactly TrackEval's combination (TP-weighted
AssA and LocA, summed detection counts).
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["ALPHAS", "hota"]

#: Localisation thresholds of HOTA.
ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(np.float64).eps

Frame = Tuple[np.ndarray, np.ndarray, np.ndarray]


def hota(frames: Sequence[Frame]) -> Dict[str, float]:
    """HOTA and its sub-metrics over a sequence of frames.

    Args:
        frames: per frame ``(gt_ids [G] int, pred_ids [P] int, similarity [G, P])`` with
            similarities in ``[0, 1]``. Ids name tracks across all frames (make them
            unique across sequences and classes to score those together).

    Returns:
        ``{"HOTA", "DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe", "AssPr"}``, each the
        mean over :data:`ALPHAS`, plus ``"HOTA(0)"`` (at ``alpha = 0.05``, the lowest).
    """
    gt_index: Dict[int, int] = {}
    pr_index: Dict[int, int] = {}
    frames = [(np.array([gt_index.setdefault(int(g), len(gt_index)) for g in gi], dtype=np.int64),
               np.array([pr_index.setdefault(int(p), len(pr_index)) for p in pi], dtype=np.int64),
               np.asarray(sim, dtype=np.float64).reshape(len(gi), len(pi)))
              for gi, pi, sim in frames]
    n_gt, n_pr = len(gt_index), len(pr_index)
    gt_count = np.bincount(np.concatenate([f[0] for f in frames] + [np.zeros(0, np.int64)]), minlength=n_gt)
    pr_count = np.bincount(np.concatenate([f[1] for f in frames] + [np.zeros(0, np.int64)]), minlength=n_pr)
    # Sparse over (gt, pred) pairs: key = gt * n_pr + pred.
    keys, soft = [], []
    for g, p, sim in frames:
        if sim.size:
            denom = sim.sum(0, keepdims=True) + sim.sum(1, keepdims=True) - sim
            keys.append((g[:, None] * n_pr + p[None, :]).ravel())
            soft.append(np.where(denom > _EPS, sim / np.maximum(denom, _EPS), 0.0).ravel())
    pair_keys, inverse = np.unique(np.concatenate(keys + [np.zeros(0, np.int64)]), return_inverse=True)
    potential = np.bincount(inverse, np.concatenate(soft + [np.zeros(0)]), minlength=len(pair_keys))
    pg, pp = pair_keys // max(n_pr, 1), pair_keys % max(n_pr, 1)
    alignment = potential / np.maximum(gt_count[pg] + pr_count[pp] - potential, _EPS)

    k = len(ALPHAS)
    tp, loc = np.zeros(k), np.zeros(k)
    matched: List[List[np.ndarray]] = [[] for _ in range(k)]
    for g, p, sim in frames:
        if sim.size == 0:
            continue
        frame_keys = g[:, None] * n_pr + p[None, :]
        score = alignment[np.searchsorted(pair_keys, frame_keys)] * sim
        rows, cols = linear_sum_assignment(-score)
        s = sim[rows, cols]
        for a, alpha in enumerate(ALPHAS):
            ok = s >= alpha - _EPS
            tp[a] += ok.sum()
            loc[a] += s[ok].sum()
            matched[a].append(frame_keys[rows[ok], cols[ok]])
    num_gt, num_pr = gt_count.sum(), pr_count.sum()
    fn, fp = num_gt - tp, num_pr - tp
    ass = np.zeros((3, k))  # AssA, AssRe, AssPr sums over TPs
    for a in range(k):
        pairs, counts = np.unique(np.concatenate(matched[a] + [np.zeros(0, np.int64)]), return_counts=True)
        gc, pc = gt_count[pairs // max(n_pr, 1)], pr_count[pairs % max(n_pr, 1)]
        ass[0, a] = (counts * counts / np.maximum(gc + pc - counts, 1)).sum()
        ass[1, a] = (counts * counts / np.maximum(gc, 1)).sum()
        ass[2, a] = (counts * counts / np.maximum(pc, 1)).sum()
    ass_a, ass_re, ass_pr = ass / np.maximum(tp, 1)
    det_a = tp / np.maximum(tp + fn + fp, 1)
    out = {"HOTA": np.sqrt(det_a * ass_a), "DetA": det_a, "AssA": ass_a,
           "LocA": np.maximum(loc, 1e-10) / np.maximum(tp, 1e-10),
           "DetRe": tp / np.maximum(tp + fn, 1), "DetPr": tp / np.maximum(tp + fp, 1),
           "AssRe": ass_re, "AssPr": ass_pr}
    result = {key: float(np.mean(value)) for key, value in out.items()}
    result["HOTA(0)"] = float(out["HOTA"][0])
    return result
