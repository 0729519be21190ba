"""Multi-object tracking metrics of 3D boxes: CLEAR MOT, IDF1, AMOTA/sAMOTA and HOTA.

* CLEAR MOT (Bernardin and Stiefelhagen 2008: MOTA, MOTP, ID switches, fragmentations,
  mostly tracked/lost) and IDF1 (Ristani et al. 2016) come from ``motmetrics``
  (py-motmetrics), fed with a 3D distance matrix per frame and class:

  - ``match="center"`` (default): Euclidean distance of the box centres in metres; a pair
    may match when it is at most ``max_distance`` (default 2 m, nuScenes' threshold);
  - ``match="iou_3d"``: ``1 - IoU3D`` (:func:`geo3d.geometry.box_iou_3d`); a pair may
    match when ``IoU3D >= min_iou`` (default 0.25, AB3DMOT's KITTI 3D threshold).

  MOTP is motmetrics' definition: the mean matching distance over the matches (metres, or
  ``1 - IoU``), so lower is better.
* AMOTA, sAMOTA and AMOTP as AB3DMOT (Weng et al., IROS 2020) defines them, computed
  with the same motmetrics evaluation: the predictions are thresholded by ``box_scores``
  at ``L = num_recall_points`` recall values ``r`` (the score of the ``ceil(r * num_gt)``-th
  true positive of the unthresholded evaluation); ``MOTA_r`` is the MOTA there,
  ``sMOTA_r = clip(MOTA_r / r, 0, 1)`` (= ``max(0, 1 - (IDS + FP + FN - (1 - r) num_gt) /
  (r num_gt))``), ``AMOTA = mean MOTA_r``, ``sAMOTA = mean sMOTA_r``, recall values that
  are never reached counting 0; ``AMOTP`` is the mean ``MOTP_r`` over the reached ones.
  With ``min_recall=0.1`` the recall values are ``linspace(0.1, 1, L)`` and sAMOTA is
  nuScenes' AMOTA (which nuScenes computes from MOTAR, the same quantity).
* HOTA, DetA, AssA, LocA (and DetRe, DetPr, AssRe, AssPr) with the 3D IoU as similarity,
  by :func:`geo3d.tasks.metrics.hota.hota` (no library computes HOTA in 3D).

Predictions only match targets of their own class. The top-level values pool every
class (counts summed over classes and sequences; HOTA over all tracks), except AMOTA,
sAMOTA and AMOTP, which are means over the classes present in the targets, as AB3DMOT
and nuScenes report them. ``per_class`` holds every metric per class and ``class_mean``
the mean over the classes present in the targets.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import box_iou_3d
from geo3d.geometry.validation import check_finite, check_index, check_points
from geo3d.tasks.metrics.hota import hota

__all__ = ["evaluate_tracking", "MATCH_MODES"]

MATCH_MODES = ("center", "iou_3d")
_FULL = ["num_fragmentations", "mostly_tracked", "mostly_lost", "num_unique_objects", "idtp",
         "idfp", "idfn"]
_CLEAR = ["num_objects", "num_predictions", "num_detections", "num_false_positives",
          "num_misses", "num_switches"] + _FULL


class _Frame:
    """One frame of one sequence as numpy arrays (boxes float64)."""

    __slots__ = ("boxes", "labels", "ids", "scores")

    def __init__(self, data: object, name: str, scores: bool) -> None:
        boxes = getattr(data, "boxes", None) if data is not None else None
        if boxes is None:
            raise InvalidInputError(f"{name} has no boxes")
        check_points(boxes, f"{name}.boxes", dim=7)
        if bool((boxes[:, 3:6] < 0).any()):
            raise InvalidInputError(f"{name}.boxes has negative sizes")
        k = boxes.shape[0]
        labels = getattr(data, "box_labels", None)
        ids = getattr(data, "track_id", None)
        if ids is None:
            raise InvalidInputError(f"{name} has no track_id")
        check_index(ids, f"{name}.track_id", k)
        labels = torch.zeros(k, dtype=torch.long) if labels is None else labels
        check_index(labels, f"{name}.box_labels", k)
        self.boxes = boxes.detach().cpu().double().numpy()
        self.labels = labels.detach().cpu().numpy().astype(np.int64)
        self.ids = ids.detach().cpu().numpy().astype(np.int64)
        pairs = set(zip(self.labels.tolist(), self.ids.tolist()))
        if len(pairs) != k:
            raise InvalidInputError(f"{name}.track_id repeats an id within one class")
        self.scores = np.ones(k)
        s = getattr(data, "box_scores", None)
        if scores and s is not None:
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != (k,) or not s.is_floating_point():
                raise InvalidInputError(f"{name}.box_scores must be a float tensor of shape [{k}]")
            check_finite(s, f"{name}.box_scores")
            self.scores = s.detach().cpu().double().numpy()

    def subset(self, mask: np.ndarray) -> "_Frame":
        out = object.__new__(_Frame)
        for key in self.__slots__:
            setattr(out, key, getattr(self, key)[mask])
        return out


def _sequences(predictions: object, targets: object) -> List[List[Tuple[_Frame, _Frame]]]:
    """Normalise one sequence (a list of frames) or several (a list of lists)."""
    for value, name in ((predictions, "predictions"), (targets, "targets")):
        if not isinstance(value, (list, tuple)):
            raise InvalidInputError(f"{name} must be a list of frames or of sequences, got {type(value).__name__}")
    nested = [isinstance(x, (list, tuple)) for x in list(predictions) + list(targets)]
    if any(nested) and not all(nested):
        raise InvalidInputError("predictions and targets must both be lists of frames or both lists of sequences")
    preds = list(predictions) if any(nested) else [predictions]
    tgts = list(targets) if any(nested) else [targets]
    if len(preds) != len(tgts):
        raise InvalidInputError(f"predictions has {len(preds)} sequences, targets {len(tgts)}")
    out = []
    for s, (p_seq, t_seq) in enumerate(zip(preds, tgts)):
        if len(p_seq) != len(t_seq):
            raise InvalidInputError(f"sequence {s}: predictions has {len(p_seq)} frames, targets {len(t_seq)}")
        out.append([(_Frame(p, f"predictions[{s}][{f}]", True), _Frame(t, f"targets[{s}][{f}]", False))
                    for f, (p, t) in enumerate(zip(p_seq, t_seq))])
    if not any(out):
        raise InvalidInputError("predictions and targets hold no frames")
    return out


def _distances(pred: _Frame, gt: _Frame, match: str, threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """``(distance [G, P] with NaN where no match is allowed, IoU3D [G, P])``."""
    if gt.boxes.shape[0] and pred.boxes.shape[0]:
        iou = box_iou_3d(torch.from_numpy(gt.boxes), torch.from_numpy(pred.boxes)).numpy()
    else:
        iou = np.zeros((gt.boxes.shape[0], pred.boxes.shape[0]))
    same = gt.labels[:, None] == pred.labels[None, :]
    iou = np.where(same, iou, 0.0)
    if match == "center":
        dist = np.linalg.norm(gt.boxes[:, None, :3] - pred.boxes[None, :, :3], axis=-1)
        ok = same & (dist <= threshold)
    else:
        dist, ok = 1.0 - iou, same & (iou >= threshold)
    return np.where(ok, dist, np.nan), iou


def _clear(seqs: List[List[tuple]], score_threshold: float = -math.inf,
           full: bool = True) -> Tuple[Dict[str, float], np.ndarray]:
    """Summed motmetrics counts over sequences (one accumulator each) for one class.

    Each element of ``seqs`` is a list of ``(pred, gt, dist)`` per frame. With ``full``,
    every count of :data:`_CLEAR` (``motmetrics.metrics.compute``: IDF1, fragmentations...)
    and the scores of the matched predictions; without, only the CLEAR counts that MOTA
    and MOTP need, read straight from the accumulator's events (the AMOTA sweep).
    """
    import motmetrics as mm

    total = dict.fromkeys(_CLEAR, 0.0)
    total["dist_sum"] = 0.0
    tp_scores: List[float] = []
    for frames in seqs:
        acc = mm.MOTAccumulator(auto_id=False)
        for f, (pred, gt, dist) in enumerate(frames):
            keep = pred.scores >= score_threshold
            acc.update(gt.ids.tolist(), pred.ids[keep].tolist(), dist[:, keep], frameid=f)
        ev = acc.mot_events
        types = ev["Type"]
        hits = ev[types.isin(["MATCH", "SWITCH"])]
        total["num_detections"] += len(hits)
        total["num_switches"] += int((types == "SWITCH").sum())
        total["num_misses"] += int((types == "MISS").sum())
        total["num_false_positives"] += int((types == "FP").sum())
        total["num_objects"] += len(hits) + int((types == "MISS").sum())
        total["num_predictions"] += len(hits) + int((types == "FP").sum())
        total["dist_sum"] += float(hits["D"].sum())
        if full:
            res = _metrics_host().compute(acc, metrics=_FULL, return_dataframe=False)
            for key in _FULL:
                total[key] += float(res[key])
            lookup = {(f, int(i)): float(sc) for f, (pred, _, _) in enumerate(frames)
                      for i, sc in zip(pred.ids, pred.scores)}
            tp_scores += [lookup[(int(f), int(h))]
                          for f, h in zip(hits.index.get_level_values(0), hits["HId"])]
    return total, np.asarray(tp_scores)


_HOST = []


def _metrics_host():
    """One ``motmetrics.metrics.MetricsHost`` (creating one is slow)."""
    import motmetrics as mm

    if not _HOST:
        _HOST.append(mm.metrics.create())
    return _HOST[0]


def _clear_metrics(c: Dict[str, float]) -> Dict[str, float]:
    n, det = c["num_objects"], c["num_detections"]
    errors = c["num_misses"] + c["num_false_positives"] + c["num_switches"]
    idtp = c["idtp"]
    nan = float("nan")
    return {
        "MOTA": 1.0 - errors / n if n else nan,
        "MOTP": c["dist_sum"] / det if det else nan,
        "IDF1": 2 * idtp / (2 * idtp + c["idfp"] + c["idfn"]) if (idtp + c["idfp"] + c["idfn"]) else nan,
        "IDSW": c["num_switches"], "FRAG": c["num_fragmentations"],
        "FP": c["num_false_positives"], "FN": c["num_misses"], "TP": det,
        "MT": c["mostly_tracked"], "ML": c["mostly_lost"],
        "recall": det / n if n else nan,
        "precision": det / c["num_predictions"] if c["num_predictions"] else nan,
        "num_targets": n, "num_predictions": c["num_predictions"],
        "num_target_tracks": c["num_unique_objects"],
    }


def _amota(seqs: List[List[tuple]], num_gt: float, tp_scores: np.ndarray,
           num_recall_points: int, min_recall: float) -> Dict[str, float]:
    """AMOTA, sAMOTA, AMOTP of one class (see the module docstring)."""
    nan = float("nan")
    if num_gt == 0:
        return {"AMOTA": nan, "sAMOTA": nan, "AMOTP": nan}
    recalls = np.linspace(max(min_recall, 1.0 / num_recall_points), 1.0, num_recall_points)
    scores = np.sort(tp_scores)[::-1]
    mota, smota, motp, cache = [], [], [], {}
    for r in recalls:
        k = int(math.ceil(r * num_gt - 1e-9))
        if k > scores.size or k < 1:
            mota.append(0.0)
            smota.append(0.0)
            continue
        thr = float(scores[k - 1])
        if thr not in cache:
            cache[thr] = _clear_metrics(_clear(seqs, thr, full=False)[0])
        m = cache[thr]
        mota.append(m["MOTA"])
        smota.append(min(1.0, max(0.0, m["MOTA"] / r)))
        motp.append(m["MOTP"])
    return {"AMOTA": float(np.mean(mota)), "sAMOTA": float(np.mean(smota)),
            "AMOTP": float(np.nanmean(motp)) if motp and not np.isnan(motp).all() else nan}


def evaluate_tracking(
    predictions: Sequence,
    targets: Sequence,
    *,
    match: str = "center",
    max_distance: float = 2.0,
    min_iou: float = 0.25,
    class_names: Optional[Sequence[str]] = None,
    num_recall_points: int = 40,
    min_recall: float = 0.0,
    amota: bool = True,
) -> dict:
    """Score tracks against ground truth: MOTA, MOTP, IDF1, IDSW, FRAG, AMOTA, sAMOTA, HOTA...

    Args:
        predictions: per-frame ``Data`` with ``boxes`` ``[K, 7]``, ``track_id`` ``[K]``,
            ``box_labels`` ``[K]`` (default all 0) and ``box_scores`` ``[K]`` (for AMOTA;
            default all 1); or a list of such sequences.
        targets: the ground truth, the same number of frames (and sequences); ``box_scores``
            is ignored.
        match: ``"center"`` (default) or ``"iou_3d"``: the distance of CLEAR MOT, IDF1 and
            AMOTA (module docstring).
        max_distance: largest matching centre distance in metres (``"center"``; default 2).
        min_iou: smallest matching 3D IoU (``"iou_3d"``; default 0.25).
        class_names: names of labels ``0, 1, ...`` for ``per_class`` (default ``class_<i>``).
        num_recall_points: recall values of AMOTA/sAMOTA (default 40, as AB3DMOT).
        min_recall: lowest recall value (default 0: AB3DMOT; 0.1: nuScenes).
        amota: compute AMOTA/sAMOTA/AMOTP (default True; they re-run the evaluation at up
            to ``num_recall_points`` score thresholds).

    Returns:
        ``{"MOTA", "MOTP", "IDF1", "IDSW", "FRAG", "FP", "FN", "TP", "MT", "ML", "recall",
        "precision", "num_targets", "num_predictions", "num_target_tracks", "AMOTA",
        "sAMOTA", "AMOTP", "HOTA", "DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe",
        "AssPr", "HOTA(0)", "per_class": {name: {...}}, "class_mean": {...}}``. Ratios of
        zero counts (e.g. MOTA without targets) are NaN.
    """
    if match not in MATCH_MODES:
        raise InvalidInputError(f"match must be one of {list(MATCH_MODES)}, got {match!r}")
    for value, name, low, high in ((max_distance, "max_distance", 0.0, math.inf),
                                   (min_iou, "min_iou", 0.0, 1.0), (min_recall, "min_recall", 0.0, 1.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
                or (name != "min_recall" and value <= 0):
            raise InvalidInputError(f"{name} must be a number in ({low}, {high}], got {value!r}")
    if isinstance(num_recall_points, bool) or not isinstance(num_recall_points, int) or num_recall_points < 1:
        raise InvalidInputError(f"num_recall_points must be an integer >= 1, got {num_recall_points!r}")
    seqs = _sequences(predictions, targets)
    threshold = max_distance if match == "center" else min_iou

    classes = sorted({int(c) for frames in seqs for p, t in frames
                      for c in np.concatenate([p.labels, t.labels])})
    names = {c: (class_names[c] if class_names is not None and 0 <= c < len(class_names)
                 else f"class_{c}") for c in classes}
    per_class, counts, hota_frames = {}, [], []
    key_of: Dict[tuple, int] = {}
    for c in classes:
        cseqs, cframes = [], []
        for s, frames in enumerate(seqs):
            rows = []
            for pred, gt in frames:
                pc, gc = pred.subset(pred.labels == c), gt.subset(gt.labels == c)
                dist, iou = _distances(pc, gc, match, threshold)
                rows.append((pc, gc, dist))
                g = np.array([key_of.setdefault(("gt", s, c, i), len(key_of)) for i in gc.ids.tolist()], np.int64)
                p = np.array([key_of.setdefault(("pr", s, c, i), len(key_of)) for i in pc.ids.tolist()], np.int64)
                cframes.append((g, p, iou))
            cseqs.append(rows)
        clear, tp_scores = _clear(cseqs)
        counts.append(clear)
        metrics = _clear_metrics(clear)
        if amota:
            metrics.update(_amota(cseqs, clear["num_objects"], tp_scores, num_recall_points, min_recall))
        metrics.update(hota(cframes))
        per_class[names[c]] = metrics
        hota_frames.append(cframes)

    pooled = {key: sum(cnt[key] for cnt in counts) for key in (counts[0] if counts else {})}
    result = _clear_metrics(pooled) if counts else _clear_metrics(dict.fromkeys(_CLEAR + ["dist_sum"], 0.0))
    # Pool HOTA: frame f of every class together; ids are distinct per class already.
    merged = []
    for f in range(len(hota_frames[0]) if hota_frames else 0):
        parts = [frames[f] for frames in hota_frames]
        g = np.concatenate([x[0] for x in parts])
        p = np.concatenate([x[1] for x in parts])
        sim = np.zeros((g.size, p.size))
        r0 = c0 = 0
        for gi, pi, s in parts:
            sim[r0:r0 + gi.size, c0:c0 + pi.size] = s
            r0, c0 = r0 + gi.size, c0 + pi.size
        merged.append((g, p, sim))
    result.update(hota(merged))
    present = [names[c] for c, cnt in zip(classes, counts) if cnt["num_objects"] > 0]
    scalar_keys = [k for k in (per_class[present[0]] if present else {})]
    class_mean = {k: float(np.mean([per_class[n][k] for n in present])) for k in scalar_keys}
    for key in ("AMOTA", "sAMOTA", "AMOTP"):
        if amota:
            result[key] = class_mean.get(key, float("nan"))
    result["per_class"] = per_class
    result["class_mean"] = class_mean
    return result
