"""CPU backend of the neighbour search: ``scipy.spatial.cKDTree``, made exact.

scipy's kd-tree is the fastest exact CPU search available here (open3d's is as fast but
may only be imported by io/sim/viewers). cKDTree returns the right *distances*, but among
points at the same distance it returns whichever it met first in the tree. geo3d orders
neighbours by ``(distance, index)``, so this module adds the tie handling:

* query one candidate more than needed, so a tie at the cut-off is visible;
* rows with a tie at the cut-off (or, for graphs, rows whose own point was pushed out of
  the candidate list by duplicates) are recomputed exactly by :func:`_exact_rows`;
* rows with ties inside the kept list are re-sorted by ``(distance, index)``.

Distances are float64 Euclidean distances exactly as cKDTree computes them; all inputs
are numpy float64 arrays of one batch item, indices are local to that item.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
from scipy.spatial import cKDTree

from geo3d._threads import in_pool_thread

_ROW_CHUNK = 1 << 18  # query rows per cKDTree call (bounds the candidate matrices)
_ENTRY_BUDGET = 1 << 23  # candidate entries per call in the adaptive paths
_SAMPLE_ROWS = 256  # rows used to guess the neighbour count of a radius query
_REORDER_MIN = 1 << 16  # from this tree size, queries go in spatial order (cache hits)
_PARALLEL_MIN = 1 << 15  # query rows * candidates from which cKDTree gets all cores


def build_tree(points: np.ndarray) -> cKDTree:
    """Build the kd-tree of one batch item (float64, C-contiguous, not copied)."""
    return cKDTree(points, copy_data=False)


def _workers(rows: int, k: int) -> int:
    """cKDTree's ``workers``: all cores only for big queries. It starts its threads on
    every call, which costs more than a small query itself (32 rows x 33 neighbours:
    ~40 us on one thread, ~130 us on two). One thread inside geo3d's pool threads, which
    already search batch items in parallel."""
    if in_pool_thread():  # batch items are already searched in parallel
        return 1
    return -1 if rows * k >= _PARALLEL_MIN else 1


def _query(tree: cKDTree, q: np.ndarray, k: int, bound: float) -> Tuple[np.ndarray, np.ndarray]:
    """``tree.query`` always returning ``[m, k]`` arrays (padding: inf / ``tree.n``)."""
    d, i = tree.query(q, k=k, distance_upper_bound=bound, workers=_workers(len(q), k))
    if k == 1:
        d, i = d.reshape(-1, 1), i.reshape(-1, 1)
    return d, i


def _spatial_order(tree: cKDTree, q: np.ndarray, q_is_data: bool) -> Optional[np.ndarray]:
    """A spatially coherent order of the query rows, or ``None`` for small problems.

    Querying a large tree in random order misses the caches on every row; in tree order
    (the tree's leaf order, or that of a quick tree on ``q``) 10^6 points run ~2.5x faster.
    """
    if tree.n < _REORDER_MIN or len(q) < _REORDER_MIN // 16:
        return None
    if q_is_data:
        return tree.indices
    return cKDTree(q, balanced_tree=False, compact_nodes=False, leafsize=64).indices


def _upper_bound(r: float) -> float:
    """A bound for cKDTree's strict ``distance < bound`` test that keeps every ``d <= r``."""
    return max(r * (1.0 + 1e-9), 1e-150)


def _sort_tied_rows(d: np.ndarray, i: np.ndarray, rows: np.ndarray) -> None:
    """Sort ``rows`` of ``(d, i)`` in place by ``(distance, index)``."""
    if rows.size:
        order = np.lexsort((i[rows], d[rows]), axis=-1)
        i[rows] = np.take_along_axis(i[rows], order, axis=1)
        d[rows] = np.take_along_axis(d[rows], order, axis=1)


def _tied_inside(d: np.ndarray) -> np.ndarray:
    """Rows holding two equal finite distances next to each other."""
    eq = d[:, 1:] == d[:, :-1]
    if not eq.any():  # the usual case: one fast reduction, no per-row work
        return np.zeros(d.shape[0], dtype=bool)
    return (eq & np.isfinite(d[:, 1:])).any(axis=1)


def _drop_self(
    d: np.ndarray, i: np.ndarray, self_idx: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove each row's own index; rows that do not contain it lose their last column.

    Returns the reduced ``(d, i)`` and the mask of rows that did not contain themselves.
    """
    if bool((i[:, 0] == self_idx).all()):
        return d[:, 1:], i[:, 1:], np.zeros(len(i), dtype=bool)
    hit = i == self_idx[:, None]
    missing = ~hit.any(axis=1)
    hit[missing, -1] = True
    keep = ~hit
    m, c = i.shape
    return d[keep].reshape(m, c - 1), i[keep].reshape(m, c - 1), missing


def _exact_rows(
    tree: cKDTree, q: np.ndarray, kk: int, self_idx: Optional[np.ndarray], bound: float
) -> Tuple[np.ndarray, np.ndarray]:
    """The first ``kk`` points by ``(distance, index)`` for each query row, exactly.

    Rows with equal coordinates share their answer, so each distinct query point is
    solved once: the candidate count is doubled until the last candidate is strictly
    farther than the cut-off (or every point is a candidate), then the candidates are
    sorted by ``(distance, index)``. With ``self_idx`` the row's own point is excluded.
    """
    excl = self_idx is not None
    need = min(kk + int(excl), tree.n)
    uq, inv = np.unique(q, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    best_d = np.empty((len(uq), need))
    best_i = np.empty((len(uq), need), dtype=np.int64)
    pending = np.arange(len(uq))
    kq = min(tree.n, 2 * need + 1)
    while pending.size:
        step = max(1, _ENTRY_BUDGET // kq)
        unresolved: List[np.ndarray] = []
        for s in range(0, pending.size, step):
            rows = pending[s : s + step]
            d, i = _query(tree, uq[rows], kq, bound)
            if kq >= tree.n:
                ok = np.ones(len(rows), dtype=bool)
            else:
                ok = (d[:, kq - 1] > d[:, need - 1]) | ~np.isfinite(d[:, kq - 1])
            order = np.lexsort((i[ok], d[ok]), axis=-1)[:, :need]
            best_d[rows[ok]] = np.take_along_axis(d[ok], order, axis=1)
            best_i[rows[ok]] = np.take_along_axis(i[ok], order, axis=1)
            unresolved.append(rows[~ok])
        pending = np.concatenate(unresolved)
        kq = min(tree.n, 2 * kq)
    d, i = best_d[inv], best_i[inv]
    if excl:
        d, i, _ = _drop_self(d, i, self_idx)
    return d[:, :kk], i[:, :kk]


def knn_rows(
    tree: cKDTree,
    q: np.ndarray,
    kk: int,
    self_idx: Optional[np.ndarray] = None,
    r: Optional[float] = None,
    q_is_data: bool = False,
) -> np.ndarray:
    """The ``kk`` nearest tree points of each query row, ordered by ``(distance, index)``.

    Args:
        tree: kd-tree of the candidate points (``tree.n`` of them).
        q: ``[m, D]`` float64 query points.
        kk: neighbours per row; ``kk <= tree.n`` (``tree.n - 1`` with ``self_idx``).
        self_idx: ``[m]`` tree index of each query row to exclude (graphs without loops).
        r: if given, only points at distance ``<= r`` count; short rows are padded with
            index ``tree.n``.
        q_is_data: ``q`` are the tree's own points (graphs): they give the query order.

    Returns:
        ``[m, kk]`` int64 indices (possibly a non-contiguous view).
    """
    m = len(q)
    if kk == 0 or m == 0:
        return np.empty((m, kk), dtype=np.int64)
    bound = np.inf if r is None else _upper_bound(r)
    order = _spatial_order(tree, q, q_is_data)
    if order is None and m <= _ROW_CHUNK:
        return _knn_chunk(tree, q, kk, self_idx, r, bound)
    out = np.empty((m, kk), dtype=np.int64)
    for s in range(0, m, _ROW_CHUNK):
        rows = slice(s, s + _ROW_CHUNK) if order is None else order[s : s + _ROW_CHUNK]
        sub_self = None if self_idx is None else self_idx[rows]
        out[rows] = _knn_chunk(tree, q[rows], kk, sub_self, r, bound)
    return out


def _knn_chunk(tree, q, kk, self_idx, r, bound) -> np.ndarray:
    """:func:`knn_rows` for one block of rows."""
    excl = self_idx is not None
    d, i = _query(tree, q, min(kk + int(excl) + 1, tree.n), bound)
    redo = np.zeros(len(d), dtype=bool)
    if excl:
        d, i, redo = _drop_self(d, i, self_idx)
    if d.shape[1] > kk:
        redo |= (d[:, kk] == d[:, kk - 1]) & np.isfinite(d[:, kk])
    d, i = d[:, :kk], i[:, :kk]
    _sort_tied_rows(d, i, np.flatnonzero(_tied_inside(d) & ~redo))
    if redo.any():
        rows = np.flatnonzero(redo)
        d[rows], i[rows] = _exact_rows(
            tree, q[rows], kk, None if not excl else self_idx[rows], bound
        )
    if r is not None:
        i[d > r] = tree.n
    return i


def _guess_count(tree: cKDTree, q: np.ndarray, bound: float) -> int:
    """A candidate count that covers most rows of a radius query, from a row sample."""
    sample = q[:: max(1, len(q) // _SAMPLE_ROWS)]
    counts = tree.query_ball_point(sample, bound, return_length=True, workers=1)
    return int(min(tree.n, max(2, np.ceil(1.5 * np.percentile(counts, 95)) + 1)))


def radius_rows(
    tree: cKDTree,
    q: np.ndarray,
    r: float,
    self_idx: Optional[np.ndarray] = None,
    q_is_data: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """All tree points at distance ``<= r`` of each query row, by ``(distance, index)``.

    Rows are first queried with a guessed candidate count; rows that fill it are counted
    exactly and queried again in groups of similar count (so padding stays below 2x).

    Returns:
        ``(counts [m] int64, cols [sum(counts)] int64)``: row ``j``'s neighbours are
        ``cols[offset_j : offset_j + counts_j]`` in row order.
    """
    m = len(q)
    if m == 0 or tree.n == 0:
        return np.zeros(m, dtype=np.int64), np.empty(0, dtype=np.int64)
    bound = _upper_bound(r)
    k0 = _guess_count(tree, q, bound)
    order = _spatial_order(tree, q, q_is_data)
    counts = np.zeros(m, dtype=np.int64)
    kept: List[Tuple[np.ndarray, np.ndarray]] = []  # (rows, their neighbours, row-major)

    def keep(rows: np.ndarray, d: np.ndarray, i: np.ndarray) -> None:
        _sort_tied_rows(d, i, np.flatnonzero(_tied_inside(d)))
        mask = d <= r
        if self_idx is not None:
            mask &= i != self_idx[rows, None]
        counts[rows] = mask.sum(axis=1)
        kept.append((rows, i[mask]))

    overflow: List[np.ndarray] = []
    step = max(1, _ENTRY_BUDGET // k0)
    for s in range(0, m, step):
        rows = np.arange(s, min(m, s + step)) if order is None else order[s : s + step]
        d, i = _query(tree, q[rows], k0, bound)
        full = np.isfinite(d[:, -1]) if k0 < tree.n else np.zeros(len(rows), dtype=bool)
        if full.any():
            overflow.append(rows[full])
            rows, d, i = rows[~full], d[~full], i[~full]
        keep(rows, d, i)
    if overflow:
        rows_o = np.concatenate(overflow)
        n_o = tree.query_ball_point(q[rows_o], bound, return_length=True,  # rows over k0
                                    workers=_workers(len(rows_o), k0))
        level = np.ceil(np.log2(np.maximum(n_o, 1))).astype(np.int8)
        by_level = np.argsort(level, kind="stable")
        rows_o, n_o, level = rows_o[by_level], n_o[by_level], level[by_level]
        cuts = np.flatnonzero(np.diff(level)) + 1
        for part_rows, part_n in zip(np.split(rows_o, cuts), np.split(n_o, cuts)):
            kq = int(min(tree.n, part_n.max()))
            step = max(1, _ENTRY_BUDGET // kq)
            for s in range(0, len(part_rows), step):
                rows = part_rows[s : s + step]
                keep(rows, *_query(tree, q[rows], kq, bound))
    return counts, _in_row_order(kept, counts)


def _in_row_order(kept: List[Tuple[np.ndarray, np.ndarray]], counts: np.ndarray) -> np.ndarray:
    """Concatenate per-block neighbour lists so that rows come in ascending order."""
    m = len(counts)
    if len(kept) == 1 and np.array_equal(kept[0][0], np.arange(m)):
        return kept[0][1]
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cols = np.empty(int(offsets[-1]), dtype=np.int64)
    for rows, flat in kept:
        c = counts[rows]
        starts = np.repeat(offsets[rows] - np.cumsum(c) + c, c)
        cols[starts + np.arange(flat.size)] = flat
    return cols
