"""3D detection metrics: KITTI-style AP (40 recall points, BEV / 3D IoU) and nuScenes-style
centre-distance mAP, plus the evaluator that :func:`geo3d.tasks.evaluate` drives.

Written here: no library computes AP for 7-DoF boxes without a dataset toolkit attached
(the KITTI devkit is C++ on label files, nuscenes-devkit needs its database, mmdet3d
needs compiled ops). IoUs come from :func:`geo3d.geometry.boxes.box_iou_3d` /
:func:`~geo3d.geometry.boxes.box_iou_bev`.

Conventions shared by both metrics:

* Per class, the predictions of all frames are sorted by descending score and matched
  greedily, in that order, to a not yet matched ground-truth box of the same class and
  frame: the one with the highest IoU (KITTI) or the nearest centre (nuScenes). A match
  needs IoU ``>= threshold`` / centre distance ``<= threshold``; unmatched predictions
  are false positives (a second detection of a matched box is one).
* Ties: predictions of equal score form one operating point: precision and recall are
  read only after the whole group, so the result does not depend on their order.
* A class without ground-truth boxes has AP NaN (undefined) and is left out of means.
* Boxes whose label is not one of the evaluated classes are ignored.

KITTI R40 (Simonelli et al., "Disentangling Monocular 3D Object Detection", ICCV 2019):
``AP = 1/40 sum_{r in {1/40, ..., 1}} max_{r' >= r} precision(r')`` (0 where recall ``r``
is never reached). Unlike the KITTI devkit there are no difficulty levels and no
"don't care" regions: filter the ground truth beforehand if needed.

nuScenes (Caesar et al., CVPR 2020): BEV centre distance thresholds 0.5, 1, 2, 4 m;
precision interpolated on 101 recall points, the points with recall ``<= 0.1`` dropped,
precision ``- 0.1`` clipped at 0 and rescaled by ``1 / 0.9``; AP of a class is the mean over
thresholds, mAP the mean over classes. (The devkit gives a class without ground truth AP
0; here it is NaN and left out of the mean.)
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import box_iou_3d, box_iou_bev
from geo3d.sim.classes import CLASSES, OBJECT_CLASSES

__all__ = ["average_precision", "center_distance_ap", "mean_ap", "DetectionEvaluator",
           "DEFAULT_IOU", "NUSCENES_THRESHOLDS"]

DEFAULT_IOU: Dict[str, float] = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
NUSCENES_THRESHOLDS: Tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
_R40 = np.arange(1, 41) / 40.0


# --------------------------------------------------------------------------- input checks


def _frames(frames: object, name: str, scores: bool) -> List[Tuple[torch.Tensor, ...]]:
    """``(boxes float64 [K, 7], labels [K], scores [K] or None)`` per frame, checked."""
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence):
        raise InvalidInputError(f"{name} must be a list of per-frame Data, got {type(frames).__name__}")
    out = []
    for i, f in enumerate(frames):
        where = f"{name}[{i}]"
        boxes, labels = getattr(f, "boxes", None), getattr(f, "box_labels", None)
        if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 7 \
                or not boxes.is_floating_point():
            raise InvalidInputError(f"{where}.boxes must be a float tensor [K, 7], got "
                                    f"{_describe(boxes)}")
        if not bool(torch.isfinite(boxes).all()):
            raise InvalidInputError(f"{where}.boxes contains NaN or Inf values")
        if bool((boxes[:, 3:6] < 0).any()):
            raise InvalidInputError(f"{where}.boxes has negative sizes")
        k = boxes.shape[0]
        if not isinstance(labels, torch.Tensor) or labels.shape != (k,) \
                or labels.is_floating_point() or labels.dtype == torch.bool:
            raise InvalidInputError(f"{where}.box_labels must be an integer tensor [{k}], got "
                                    f"{_describe(labels)}")
        if k and (int(labels.min()) < 0 or int(labels.max()) >= len(CLASSES)):
            raise InvalidInputError(f"{where}.box_labels must index geo3d.sim.classes.CLASSES "
                                    f"(0..{len(CLASSES) - 1}), got [{int(labels.min())}, "
                                    f"{int(labels.max())}]")
        s = None
        if scores:
            s = getattr(f, "box_scores", None)
            if not isinstance(s, torch.Tensor) or s.shape != (k,) or not s.is_floating_point():
                raise InvalidInputError(f"{where}.box_scores must be a float tensor [{k}], got "
                                        f"{_describe(s)}")
            if not bool(torch.isfinite(s).all()):
                raise InvalidInputError(f"{where}.box_scores contains NaN or Inf values")
            s = s.detach().cpu().double()
        out.append((boxes.detach().cpu().double(), labels.detach().cpu().long(), s))
    return out


def _describe(t: object) -> str:
    return f"{t.dtype} {list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def _pair(predictions: object, targets: object):
    preds = _frames(predictions, "predictions", scores=True)
    gts = _frames(targets, "targets", scores=False)
    if len(preds) != len(gts):
        raise InvalidInputError(f"predictions and targets must have one entry per frame, got "
                                f"{len(preds)} and {len(gts)}")
    return preds, gts


def _classes(classes: Optional[Sequence[str]]) -> List[str]:
    names = list(OBJECT_CLASSES if classes is None else classes)
    bad = [c for c in names if c not in CLASSES]
    if not names or bad:
        raise InvalidInputError(f"classes must be names from {CLASSES}, got {classes!r}")
    return names


def _thresholds(iou_threshold: object, names: List[str]) -> Dict[str, float]:
    def check(v: object, what: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise InvalidInputError(f"{what} must be a number in (0, 1], got {v!r}")
        return float(v)

    if iou_threshold is None:
        return {c: DEFAULT_IOU.get(c, 0.5) for c in names}
    if isinstance(iou_threshold, Mapping):
        unknown = sorted(set(iou_threshold) - set(names))
        if unknown:
            raise InvalidInputError(f"iou_threshold names unknown or unevaluated classes {unknown}")
        return {c: check(iou_threshold[c], f"iou_threshold[{c!r}]") if c in iou_threshold
                else DEFAULT_IOU.get(c, 0.5) for c in names}
    v = check(iou_threshold, "iou_threshold")
    return {c: v for c in names}


# --------------------------------------------------------------------------- core


def _match(preds, gts, cls: int, score_of_pair: Callable, better: Callable, ok: Callable):
    """Greedy matching of class ``cls``; returns (scores [D], tp [D] bool, num_gt).

    ``score_of_pair(pred_boxes, gt_boxes) -> [P, G]`` similarity; ``better(a, b)``: a is a
    better match than b; ``ok(value)``: the pair may match.
    """
    all_scores, all_tp, num_gt = [], [], 0
    for (pb, pl, ps), (gb, gl, _) in zip(preds, gts):
        pm, gm = pl == cls, gl == cls
        pb, ps, gb = pb[pm], ps[pm], gb[gm]
        num_gt += gb.shape[0]
        if not pb.shape[0]:
            continue
        order = torch.sort(ps, descending=True, stable=True).indices
        pb, ps = pb[order], ps[order]
        tp = np.zeros(pb.shape[0], dtype=bool)
        if gb.shape[0]:
            sim = score_of_pair(pb, gb).numpy()
            taken = np.zeros(gb.shape[0], dtype=bool)
            for d in range(pb.shape[0]):
                cand = np.where(~taken & ok(sim[d]))[0]
                if cand.size:
                    best = cand[0]
                    for g in cand[1:]:
                        if better(sim[d, g], sim[d, best]):
                            best = g
                    taken[best] = True
                    tp[d] = True
        all_scores.append(ps.numpy())
        all_tp.append(tp)
    if not all_scores:
        return np.zeros(0), np.zeros(0, dtype=bool), num_gt
    return np.concatenate(all_scores), np.concatenate(all_tp), num_gt


def _pr_curve(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> Tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each group of equal scores (descending)."""
    if scores.size == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], tp[order]
    ctp, cfp = np.cumsum(t), np.cumsum(~t)
    last = np.r_[s[1:] != s[:-1], True]  # the end of each tie group
    ctp, cfp = ctp[last], cfp[last]
    return ctp / (ctp + cfp), ctp / num_gt


def _interp_max(precision: np.ndarray, recall: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``max precision at recall >= r`` for each ``r`` in ``points`` (0 if unreached)."""
    env = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
    idx = np.searchsorted(recall, points - 1e-12, side="left")  # recall is non-decreasing
    out = np.zeros(points.shape[0])
    ok = idx < recall.shape[0]
    out[ok] = env[idx[ok]]
    return out


def average_precision(predictions: Sequence, targets: Sequence,
                      iou_threshold: Union[None, float, Mapping[str, float]] = None,
                      mode: str = "3d", classes: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """KITTI-style AP with 40 recall points, per class, on 3D or BEV IoU.

    Args:
        predictions: one ``Data`` per frame with ``boxes`` [K, 7], ``box_labels`` [K]
            (indices into :data:`geo3d.sim.classes.CLASSES`) and ``box_scores`` [K].
        targets: one ``Data`` per frame (same order) with ``boxes`` and ``box_labels``.
        iou_threshold: minimum IoU of a true positive: None (default) for 0.7 car, 0.5
            pedestrian and cyclist (KITTI's), one number for every class, or a dict
            ``{class name: threshold}`` (classes left out keep the default).
        mode: ``"3d"`` (default, :func:`~geo3d.geometry.boxes.box_iou_3d`) or ``"bev"``.
        classes: class names to evaluate (default car, pedestrian, cyclist).

    Returns:
        ``{class name: AP in [0, 1]}``; NaN for a class without ground truth.

    Raises:
        InvalidInputError: lists of different lengths, malformed boxes / labels / scores,
            unknown class names, thresholds outside (0, 1], an unknown ``mode``.
    """
    if mode not in ("3d", "bev"):
        raise InvalidInputError(f"mode must be '3d' or 'bev', got {mode!r}")
    names = _classes(classes)
    thr = _thresholds(iou_threshold, names)
    preds, gts = _pair(predictions, targets)
    iou = box_iou_3d if mode == "3d" else box_iou_bev
    out = {}
    for name in names:
        t = thr[name]
        scores, tp, num_gt = _match(preds, gts, CLASSES.index(name), iou,
                                    better=lambda a, b: a > b, ok=lambda row: row >= t)
        if num_gt == 0:
            out[name] = math.nan
            continue
        precision, recall = _pr_curve(scores, tp, num_gt)
        out[name] = float(_interp_max(precision, recall, _R40).mean())
    return out


def _center_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a[:, :2], b[:, :2])


def center_distance_ap(predictions: Sequence, targets: Sequence,
                       thresholds: Sequence[float] = NUSCENES_THRESHOLDS,
                       classes: Optional[Sequence[str]] = None, min_recall: float = 0.1,
                       min_precision: float = 0.1) -> Dict[str, object]:
    """nuScenes-style detection AP on BEV centre distance.

    Args:
        predictions, targets: as :func:`average_precision`.
        thresholds: centre distances in metres (default 0.5, 1, 2, 4).
        classes: class names to evaluate (default car, pedestrian, cyclist).
        min_recall, min_precision: the operating region kept (default 0.1 and 0.1).

    Returns:
        ``{"mAP": mean over classes, "AP": {class: mean over thresholds},
        "AP_at": {class: {str(threshold): AP}}}``; NaN where a class has no ground truth.
    """
    names = _classes(classes)
    ths = [float(t) for t in thresholds] if isinstance(thresholds, Sequence) else None
    if not ths or any(not (t > 0 and math.isfinite(t)) for t in ths):
        raise InvalidInputError(f"thresholds must be a non-empty list of positive distances, "
                                f"got {thresholds!r}")
    for n, v in (("min_recall", min_recall), ("min_precision", min_precision)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise InvalidInputError(f"{n} must be in [0, 1), got {v!r}")
    preds, gts = _pair(predictions, targets)
    grid = np.linspace(0, 1, 101)
    first = round(100 * min_recall) + 1
    ap_at: Dict[str, Dict[str, float]] = {}
    for name in names:
        ap_at[name] = {}
        for t in ths:
            scores, tp, num_gt = _match(preds, gts, CLASSES.index(name), _center_distance,
                                        better=lambda a, b: a < b, ok=lambda row: row <= t)
            if num_gt == 0:
                ap_at[name][str(t)] = math.nan
                continue
            precision, recall = _pr_curve(scores, tp, num_gt)
            prec = _interp_max(precision, recall, grid)[first:] - min_precision
            ap_at[name][str(t)] = min(1.0, float(np.clip(prec, 0, None).mean() / (1 - min_precision)))
    ap = {c: _nanmean(list(v.values())) for c, v in ap_at.items()}
    return {"mAP": _nanmean(list(ap.values())), "AP": ap, "AP_at": ap_at}


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(sum(vals) / len(vals)) if vals else math.nan


def mean_ap(per_class: Mapping[str, float]) -> float:
    """Mean of the per-class APs that are not NaN (NaN if none)."""
    return _nanmean(list(per_class.values()))


# --------------------------------------------------------------------------- evaluator


class DetectionEvaluator:
    """Accumulates decoded predictions and targets frame by frame; computes every AP.

    The object :func:`geo3d.tasks.evaluate` asks a detection model for
    (``model.make_evaluator()``).

    Args:
        decode: ``decode(outputs, batch) -> list of per-frame Data(boxes, box_labels,
            box_scores)`` (the model's ``decode``).
        iou_threshold: as :func:`average_precision` (default KITTI's).
        classes: class names (default car, pedestrian, cyclist).

    ``compute()`` returns ``mAP_3d`` (the key metric), ``mAP_bev``, ``AP_3d`` / ``AP_bev``
    (per class), ``nuscenes_mAP`` and ``nuscenes_AP`` (per class).
    """

    key_metric = "mAP_3d"
    higher_is_better = True

    def __init__(self, decode: Callable, iou_threshold=None,
                 classes: Optional[Sequence[str]] = None) -> None:
        self.decode, self.iou_threshold = decode, iou_threshold
        self.classes = _classes(classes)
        self.predictions: List = []
        self.targets: List = []

    def update(self, outputs, batch) -> None:
        """Decode ``outputs`` of ``batch`` and keep them with the batch's boxes."""
        from torch_geometric.data import Data

        from geo3d.models.detection.head import frame_boxes

        preds = self.decode(outputs, batch)
        self.predictions.extend(preds)
        for boxes, labels in frame_boxes(batch, len(preds)):
            self.targets.append(Data(boxes=boxes.detach().cpu().float(),
                                     box_labels=labels.detach().cpu()))

    def merge(self, other: "DetectionEvaluator") -> None:
        """Add another evaluator's frames (e.g. another rank's)."""
        self.predictions.extend(other.predictions)
        self.targets.extend(other.targets)

    def compute(self) -> Dict[str, object]:
        ap3 = average_precision(self.predictions, self.targets, self.iou_threshold, "3d",
                                self.classes)
        apb = average_precision(self.predictions, self.targets, self.iou_threshold, "bev",
                                self.classes)
        ns = center_distance_ap(self.predictions, self.targets, classes=self.classes)
        return {"mAP_3d": mean_ap(ap3), "mAP_bev": mean_ap(apb), "AP_3d": ap3, "AP_bev": apb,
                "nuscenes_mAP": ns["mAP"], "nuscenes_AP": ns["AP"]}
