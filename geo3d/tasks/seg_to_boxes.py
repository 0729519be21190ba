"""Object boxes from a semantic segmentation: clusters of object points, one box each.

Turns per-point class predictions into ``Data(boxes, box_labels, box_scores)`` that
:class:`geo3d.tasks.tracking.Tracker` takes, so a segmentation network can drive the
tracker (``benchmarks/temporal.py`` measures tracking MOTA this way). The points of each
object class are grouped by connected components of their occupied bird's-eye-view
cells (8-connected), computed by ``scipy.sparse.csgraph.connected_components`` on the
cell adjacency (no dense grid, so any extent works); each cluster gets an upright box
whose heading is the principal axis of its points in BEV (PCA, our own few lines; no
library fits oriented 3D boxes to clusters), with the extents of the points along that
axis, across it and in z.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_finite, check_points, check_positive

__all__ = ["segmentation_to_boxes"]

_NEIGHBOURS = np.array([(1, -1), (1, 0), (1, 1), (0, 1)])  # half of the 8 BEV neighbours


def _clusters(xy: np.ndarray, cell: float) -> np.ndarray:
    """Cluster id of each point: connected components of its 8-connected BEV cells."""
    ij = np.floor(xy / cell).astype(np.int64)
    ij -= ij.min(0) - 1  # >= 1, so neighbour offsets stay >= 0
    span = int(ij[:, 1].max()) + 2
    keys, inverse = np.unique(ij[:, 0] * span + ij[:, 1], return_inverse=True)
    inverse = inverse.reshape(-1)
    rows, cols = [], []
    for di, dj in _NEIGHBOURS:
        q = keys + di * span + dj
        at = np.minimum(np.searchsorted(keys, q), keys.size - 1)
        hit = np.nonzero(keys[at] == q)[0]
        rows.append(hit)
        cols.append(at[hit])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(keys.size, keys.size))
    _, comp = connected_components(graph, directed=False)
    return comp[inverse]


def _fit_box(p: np.ndarray, min_size: float) -> np.ndarray:
    """Upright box ``[7]`` around points ``p [n, 3]``: heading along the principal BEV
    axis (``l >= w``, yaw in ``[-pi/2, pi/2)``), extents of the points."""
    xy = p[:, :2] - p[:, :2].mean(0)
    if p.shape[0] >= 2:
        _, vecs = np.linalg.eigh(xy.T @ xy)
        axis = vecs[:, 1]  # largest eigenvalue
    else:
        axis = np.array([1.0, 0.0])
    yaw = float(np.arctan2(axis[1], axis[0]))
    yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s], [s, c]])
    uv = xy @ rot  # coordinates along and across the heading
    lo, hi = uv.min(0), uv.max(0)
    centre = p[:, :2].mean(0) + rot @ ((lo + hi) / 2)
    z0, z1 = p[:, 2].min(), p[:, 2].max()
    size = np.maximum([hi[0] - lo[0], hi[1] - lo[1], z1 - z0], min_size)
    return np.array([centre[0], centre[1], (z0 + z1) / 2, *size, yaw])


def segmentation_to_boxes(
    pos: Tensor,
    labels: Tensor,
    classes: Sequence[int] = (0, 1, 2),
    *,
    cell: float = 0.5,
    min_points: int = 5,
    min_size: float = 0.1,
    scores: Optional[Tensor] = None,
) -> Data:
    """One box per cluster of points predicted as an object class.

    Args:
        pos: ``[N, 3]`` points (any frame; the boxes are in the same frame).
        labels: ``[N]`` long predicted class per point (-1: none).
        classes: class ids that are objects (default ``(0, 1, 2)``: car, pedestrian,
            cyclist of :data:`geo3d.sim.classes.CLASSES`, which are also their box labels).
        cell: BEV cell edge in metres (default 0.5); points of one class in 8-connected
            occupied cells form one cluster, so objects closer than ``cell`` merge.
        min_points: clusters with fewer points are dropped (default 5).
        min_size: smallest box extent in metres (default 0.1).
        scores: ``[N]`` optional per-point confidence; a box scores the mean over its
            points (default: every box scores 1).

    Returns:
        ``Data(boxes [K, 7] float32, box_labels [K] long, box_scores [K] float32)``;
        boxes ``(x, y, z, l, w, h, yaw)``, sorted by class, then by cluster.

    Raises:
        InvalidInputError: bad shapes, dtypes, NaN/Inf, non-positive ``cell``/``min_size``.
    """
    check_points(pos, "pos")
    n = pos.shape[0]
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.dtype != torch.long:
        got = f"{labels.dtype} {list(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise InvalidInputError(f"labels must be a long tensor of shape [{n}], got {got}")
    if scores is not None:
        if not isinstance(scores, Tensor) or scores.shape != (n,) or not scores.is_floating_point():
            raise InvalidInputError(f"scores must be a float tensor of shape [{n}]")
        check_finite(scores, "scores")
    check_positive(cell, "cell")
    check_positive(min_size, "min_size")
    if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 1:
        raise InvalidInputError(f"min_points must be an integer >= 1, got {min_points!r}")
    p_all = pos.detach().cpu().double().numpy()
    lab = labels.detach().cpu().numpy()
    sc = None if scores is None else scores.detach().cpu().double().numpy()
    boxes, box_labels, box_scores = [], [], []
    for c in classes:
        sel = np.nonzero(lab == int(c))[0]
        if sel.size < min_points:
            continue
        comp = _clusters(p_all[sel, :2], cell)
        counts = np.bincount(comp)
        order = np.argsort(comp, kind="stable")
        ends = np.cumsum(counts)
        for k in np.nonzero(counts >= min_points)[0]:
            members = sel[order[ends[k] - counts[k]:ends[k]]]
            boxes.append(_fit_box(p_all[members], min_size))
            box_labels.append(int(c))
            box_scores.append(1.0 if sc is None else float(sc[members].mean()))
    return Data(boxes=torch.tensor(np.array(boxes), dtype=torch.float32).reshape(-1, 7),
                box_labels=torch.tensor(box_labels, dtype=torch.long),
                box_scores=torch.tensor(box_scores, dtype=torch.float32))
