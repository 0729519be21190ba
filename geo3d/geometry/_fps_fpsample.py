"""CPU farthest point sampling with ``fpsample`` (QuickFPS: exact FPS on a bucket kd-tree).

Why the extra code: ``fpsample.bucket_fps_kdline_sampling`` (checked on 1.0.2) builds its
kd-tree by reordering the points in place and then reads the start point at
``start_idx`` of the *reordered* array, so the sampling starts at some other point. The
reordering is deterministic (mean split along the widest box side, Hoare partition, in
float32), so :func:`_start_slot` replays it along the path of the wanted start point to
find the slot to pass. Every result is checked (first index == wanted start) and ``None``
is returned when the check fails, so the caller can fall back to the torch loop.

fpsample also repeats an index once only duplicates of chosen points remain; from that
step on we continue like the vanilla loop with selected points excluded (lowest unselected
index first). Distances are float32 in fpsample.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

try:  # fpsample is a declared dependency; stay importable without it
    from fpsample import bucket_fps_kdline_sampling as _kdline
except ImportError:  # pragma: no cover
    _kdline = None

MAX_DIM = 8  # fpsample's compiled dimensions


def available(dim: int) -> bool:
    return _kdline is not None and 1 <= dim <= MAX_DIM


def tree_height(n: int) -> int:
    """Bucket tree height (2**h buckets), the fastest measured with the start-slot replay
    included: 1 up to 2k points (1024 -> 128: 216 us, 311 us at height 4), 3 for 4k, 6
    for 16k, 9 for 1M."""
    h = 1 if n <= 2048 else 3 if n < 8192 else 6 if n < 65536 else 8 if n < 524288 else 9
    return max(1, min(h, int(np.log2(n))))


def _start_slot(p32: np.ndarray, height: int, target: int) -> int:
    """Position of point ``target`` after fpsample's in-place kd-tree build."""
    order = np.arange(len(p32))
    left, right, level = 0, len(p32), 0
    while level != height and right - left > 1:
        seg = order[left:right]  # view: swaps below update ``order``
        pts = p32[seg]
        span = pts.max(axis=0) - pts.min(axis=0)
        vals = pts[:, int(np.argmax(span))]
        split = np.cumsum(vals, dtype=np.float32)[-1] / np.float32(right - left)
        low = vals < split
        wrong_left = np.flatnonzero(~low)
        wrong_right = np.flatnonzero(low)[::-1]
        n_pairs = min(wrong_left.size, wrong_right.size)
        n_swap = int(np.count_nonzero(wrong_left[:n_pairs] < wrong_right[:n_pairs]))
        a, b = wrong_left[:n_swap], wrong_right[:n_swap]
        seg[a], seg[b] = seg[b], seg[a].copy()
        n_low = int(low.sum())
        cut = 1 if n_low == 0 else (right - left - 1 if n_low == right - left else n_low)
        at = int(np.flatnonzero(seg == target)[0])
        if at < cut:
            right = left + cut
        else:
            left = left + cut
        level += 1
    return int(np.flatnonzero(order[left:right] == target)[0]) + left


def _finish(p32: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Replace everything from the first zero-distance pick by the lowest unused indices.

    FPS distances never grow, so if the last pick is not a copy of an earlier one, no
    pick is (an O(M) check); otherwise the first repeated location is found by sorting.
    """
    picks = p32[idx]
    if idx.size < 2 or (picks[:-1] != picks[-1]).any(axis=1).all():
        return idx
    order = np.lexsort(picks.T[::-1])
    same = (picks[order[1:]] == picks[order[:-1]]).all(axis=1)
    # a repeated location: the later of two equal rows (stable sort keeps pick order)
    cut = int(order[1:][same].min())
    head = idx[:cut]
    unused = np.ones(len(p32), dtype=bool)
    unused[head] = False
    return np.concatenate([head, np.flatnonzero(unused)[: idx.size - cut]])


def fps(points: np.ndarray, n_samples: int, start: int) -> Optional[np.ndarray]:
    """Exact FPS of one item starting at ``start``; ``None`` if fpsample cannot do it."""
    n = len(points)
    if n_samples == 1 or n < 2:
        return np.array([start], dtype=np.int64)
    p32 = np.ascontiguousarray(points, dtype=np.float32)
    h = tree_height(n)
    for slot in (_start_slot(p32, h, start), start):
        idx = _kdline(p32, n_samples, h, start_idx=slot).astype(np.int64)
        if idx[0] == start:
            return _finish(p32, idx)
    return None
