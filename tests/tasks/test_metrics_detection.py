"""KITTI R40 AP and nuScenes centre-distance AP on hand-computed cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from torch_geometric.data import Batch, Data

from geo3d.errors import InvalidInputError
from geo3d.tasks.metrics.detection import (DetectionEvaluator, average_precision,
                                           center_distance_ap, mean_ap)

CAR = [10.0, 2.0, -0.8, 4.0, 2.0, 1.5, 0.3]
PED = [5.0, -3.0, -0.9, 0.6, 0.6, 1.7, 0.0]
CYC = [-8.0, 4.0, -0.9, 1.8, 0.6, 1.7, 1.2]


def _gt(boxes, labels, dtype=torch.float32):
    return Data(boxes=torch.tensor(boxes, dtype=dtype).view(-1, 7),
                box_labels=torch.tensor(labels, dtype=torch.long))


def _pred(boxes, labels, scores, dtype=torch.float32):
    d = _gt(boxes, labels, dtype)
    d.box_scores = torch.tensor(scores, dtype=dtype)
    return d


def _shift(box, dx=0.0, dz=0.0):
    """Move ``box`` by ``dx`` along its heading and ``dz`` up."""
    c, s = math.cos(box[6]), math.sin(box[6])
    return [box[0] + c * dx, box[1] + s * dx, box[2] + dz, *box[3:]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["3d", "bev"])
def test_perfect(mode, dtype):
    targets = [_gt([CAR, PED], [0, 1], dtype), _gt([CYC], [2], dtype)]
    preds = [_pred([CAR, PED], [0, 1], [0.9, 0.8], dtype), _pred([CYC], [2], [0.7], dtype)]
    ap = average_precision(preds, targets, mode=mode)
    assert ap == {"car": 1.0, "pedestrian": 1.0, "cyclist": 1.0}
    ns = center_distance_ap(preds, targets)
    assert ns["mAP"] == pytest.approx(1.0) and all(v == pytest.approx(1.0) for v in ns["AP"].values())


def test_empty():
    targets = [_gt([CAR], [0]), _gt([], [])]
    no_preds = [_pred([], [], []), _pred([], [], [])]
    ap = average_precision(no_preds, targets)
    assert ap["car"] == 0.0  # ground truth, nothing found
    assert math.isnan(ap["pedestrian"]) and math.isnan(ap["cyclist"])  # no ground truth
    assert mean_ap(ap) == 0.0
    # predictions without any ground truth of their class: AP undefined, not 0 or 1
    ap = average_precision([_pred([PED], [1], [0.9])], [_gt([], [])])
    assert all(math.isnan(v) for v in ap.values()) and math.isnan(mean_ap(ap))
    assert average_precision([], [])["car"] != average_precision([], [])["car"]  # NaN
    assert math.isnan(center_distance_ap([], [])["mAP"])
    assert center_distance_ap(no_preds, targets)["AP"]["car"] == 0.0


def test_all_false_positives():
    targets = [_gt([CAR, PED], [0, 1])]
    preds = [_pred([_shift(CAR, dx=20.0), _shift(PED, dx=-20.0), CAR], [0, 1, 2],
                   [0.9, 0.8, 0.99])]  # far away, or the wrong class
    for mode in ("3d", "bev"):
        ap = average_precision(preds, targets, mode=mode)
        assert ap["car"] == 0.0 and ap["pedestrian"] == 0.0 and math.isnan(ap["cyclist"])
    assert center_distance_ap(preds, targets)["mAP"] == 0.0


def test_duplicate():
    car2 = _shift(CAR, dx=15.0)
    targets = [_gt([CAR, car2], [0, 0])]
    # the duplicate of the first car outscores the detection of the second one:
    # (p, r) = (1, 1/2), (1/2, 1/2), (2/3, 1): R40 = 20 points at 1, 20 at 2/3
    preds = [_pred([CAR, _shift(CAR, dx=0.1), car2], [0, 0, 0], [0.9, 0.8, 0.7])]
    ap = average_precision(preds, targets, mode="bev")["car"]
    assert ap == pytest.approx((20 * 1 + 20 * 2 / 3) / 40)
    # nuScenes: recall 0.11..0.50 (40 points) at 1, 0.51..1.00 (50 points) at 2/3
    expected = (40 * 1 + 50 * (2 / 3 - 0.1) / 0.9) / 90
    assert center_distance_ap(preds, targets)["AP"]["car"] == pytest.approx(expected)
    # a duplicate scored below every true detection costs nothing in AP
    late = [_pred([CAR, car2, _shift(CAR, dx=0.1)], [0, 0, 0], [0.9, 0.8, 0.7])]
    assert average_precision(late, targets, mode="bev")["car"] == 1.0


def test_ties_are_one_operating_point():
    targets = [_gt([CAR], [0])]
    hit, miss = CAR, _shift(CAR, dx=30.0)
    for order in ([hit, miss], [miss, hit]):
        preds = [_pred(order, [0, 0], [0.5, 0.5])]
        # one group: precision 1/2 at recall 1, whatever the order
        assert average_precision(preds, targets)["car"] == 0.5
        assert center_distance_ap(preds, targets)["AP"]["car"] == pytest.approx((0.5 - 0.1) / 0.9)
    # ties across frames too
    preds = [_pred([miss], [0], [0.5]), _pred([hit], [0], [0.5])]
    assert average_precision(preds, [_gt([], []), _gt([CAR], [0])])["car"] == 0.5


def test_iou_thresholds_and_modes():
    targets = [_gt([CAR], [0])]
    shifted = [_pred([_shift(CAR, dx=1.0)], [0], [0.9])]  # BEV and 3D IoU = 3/5
    assert average_precision(shifted, targets)["car"] == 0.0  # default 0.7 for cars
    assert average_precision(shifted, targets, iou_threshold=0.59)["car"] == 1.0
    assert average_precision(shifted, targets, iou_threshold=0.61)["car"] == 0.0
    assert average_precision(shifted, targets, iou_threshold={"car": 0.55})["car"] == 1.0
    assert average_precision(shifted, targets, iou_threshold={"pedestrian": 0.1})["car"] == 0.0
    raised = [_pred([_shift(CAR, dz=0.75)], [0], [0.9])]  # half the height: 3D IoU 1/3
    assert average_precision(raised, targets, mode="bev")["car"] == 1.0
    assert average_precision(raised, targets, iou_threshold=0.3)["car"] == 1.0
    assert average_precision(raised, targets, iou_threshold=0.35)["car"] == 0.0
    # centre distance 0.9 m: matched from the 1 m threshold on (3 of 4 thresholds)
    ns = center_distance_ap([_pred([_shift(CAR, dx=0.9)], [0], [0.9])], targets)
    assert ns["AP_at"]["car"] == {"0.5": 0.0, "1.0": 1.0, "2.0": 1.0, "4.0": 1.0}
    assert ns["AP"]["car"] == pytest.approx(0.75)


def test_recall_points():
    # 4 cars, 1 found: recall 1/4 reaches 10 of the 40 points
    cars = [_shift(CAR, dx=10.0 * i) for i in range(4)]
    ap = average_precision([_pred([cars[0]], [0], [0.9])], [_gt(cars, [0] * 4)])
    assert ap["car"] == pytest.approx(10 / 40)


def test_bad_input():
    good = [_gt([CAR], [0])]
    pred = [_pred([CAR], [0], [0.9])]
    with pytest.raises(InvalidInputError, match="one entry per frame"):
        average_precision(pred, good + good)
    with pytest.raises(InvalidInputError, match=r"predictions\[0\].box_scores"):
        average_precision(good, good)
    with pytest.raises(InvalidInputError, match="mode"):
        average_precision(pred, good, mode="2d")
    with pytest.raises(InvalidInputError, match="iou_threshold"):
        average_precision(pred, good, iou_threshold=1.5)
    with pytest.raises(InvalidInputError, match="iou_threshold"):
        average_precision(pred, good, iou_threshold={"truck": 0.5})
    with pytest.raises(InvalidInputError, match=r"targets\[0\].boxes"):
        average_precision(pred, [Data(boxes=torch.zeros(1, 6), box_labels=torch.zeros(1).long())])
    nan = _gt([CAR], [0])
    nan.boxes[0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="NaN"):
        average_precision(pred, [nan])
    with pytest.raises(InvalidInputError, match="box_labels"):
        average_precision(pred, [_gt([CAR], [9])])
    with pytest.raises(InvalidInputError, match="thresholds"):
        center_distance_ap(pred, good, thresholds=[])


def test_evaluator_update_merge_compute():
    frames = [_gt([CAR, PED], [0, 1]), _gt([CYC], [2])]
    batch = Batch.from_data_list(frames)

    def decode(outputs, batch):  # a perfect detector
        return [_pred(f.boxes.tolist(), f.box_labels.tolist(), [0.9] * f.boxes.shape[0])
                for f in outputs]

    a, b = DetectionEvaluator(decode), DetectionEvaluator(decode)
    assert a.key_metric == "mAP_3d" and a.higher_is_better
    a.update(frames[:1], Batch.from_data_list(frames[:1]))
    b.update(frames[1:], Batch.from_data_list(frames[1:]))
    a.merge(b)
    out = a.compute()
    assert out["mAP_3d"] == out["mAP_bev"] == 1.0
    assert out["AP_3d"] == {"car": 1.0, "pedestrian": 1.0, "cyclist": 1.0}
    assert out["nuscenes_mAP"] == pytest.approx(1.0)
    whole = DetectionEvaluator(decode)
    whole.update(frames, batch)  # the batch is split back into its frames
    assert whole.compute()["AP_3d"] == out["AP_3d"]


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_order_invariance_and_perfect_recall(seed):
    """AP does not depend on the order of frames or of boxes within a frame; ground truth
    given back as predictions scores 1 (random cars on a 10 m lattice, no overlaps)."""
    g = torch.Generator().manual_seed(seed)
    frames_gt, frames_pred = [], []
    for _ in range(3):
        k = int(torch.randint(0, 5, (1,), generator=g))
        cells = torch.randperm(25, generator=g)[:k]
        boxes = torch.stack([torch.tensor([10.0 * (c // 5), 10.0 * (c % 5), -1.0, 4.0, 2.0, 1.5,
                                           float(torch.rand(1, generator=g)) * 6 - 3])
                             for c in cells]) if k else torch.zeros(0, 7)
        labels = torch.randint(0, 3, (k,), generator=g)
        frames_gt.append(Data(boxes=boxes, box_labels=labels))
        noisy = boxes + torch.randn(boxes.shape, generator=g) * 0.3 * (boxes.shape[0] > 0)
        noisy[:, 3:6] = noisy[:, 3:6].abs()
        frames_pred.append(Data(boxes=noisy, box_labels=labels,
                                box_scores=torch.rand(k, generator=g).round(decimals=1)))
    perfect = [Data(boxes=f.boxes, box_labels=f.box_labels,
                    box_scores=torch.ones(f.boxes.shape[0])) for f in frames_gt]
    ap = average_precision(perfect, frames_gt, mode="bev")
    assert all(v == 1.0 or math.isnan(v) for v in ap.values())
    ref = average_precision(frames_pred, frames_gt, mode="bev", iou_threshold=0.3)
    ref_ns = center_distance_ap(frames_pred, frames_gt)["AP"]
    order = [2, 0, 1]
    shuffled = []
    for f in frames_pred:
        p = torch.randperm(f.boxes.shape[0], generator=g)
        shuffled.append(Data(boxes=f.boxes[p], box_labels=f.box_labels[p], box_scores=f.box_scores[p]))
    got = average_precision([shuffled[i] for i in order], [frames_gt[i] for i in order],
                            mode="bev", iou_threshold=0.3)
    got_ns = center_distance_ap([shuffled[i] for i in order], [frames_gt[i] for i in order])["AP"]
    for c in ref:
        assert (math.isnan(ref[c]) and math.isnan(got[c])) or got[c] == pytest.approx(ref[c])
        assert (math.isnan(ref_ns[c]) and math.isnan(got_ns[c])) or got_ns[c] == pytest.approx(ref_ns[c])
