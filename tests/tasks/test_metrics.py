"""Confusion-matrix metrics against hand-computed cases and an independent numpy loop."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geo3d.errors import InvalidInputError
from geo3d.tasks.metrics import ConfusionMatrix, confusion_matrix, metrics_from_confusion


def _reference(pred, target, c):
    """Independent per-element loop: OA, mAcc, IoU list, mIoU (nan-skipping means)."""
    tp = np.zeros(c); n_t = np.zeros(c); n_p = np.zeros(c)
    correct = total = 0
    for p, t in zip(pred.tolist(), target.tolist()):
        if t == -1:
            continue
        total += 1
        n_t[t] += 1
        n_p[p] += 1
        if p == t:
            tp[t] += 1
            correct += 1
    acc = [tp[i] / n_t[i] for i in range(c) if n_t[i] > 0]
    iou = [tp[i] / (n_t[i] + n_p[i] - tp[i]) if n_t[i] + n_p[i] > 0 else math.nan
           for i in range(c)]
    kept = [v for v in iou if not math.isnan(v)]
    return (correct / total if total else math.nan, np.mean(acc) if acc else math.nan,
            iou, np.mean(kept) if kept else math.nan)


def test_hand_computed_case():
    # target: 0 0 1 1 2 -1 ; pred: 0 1 1 1 0 2
    target = torch.tensor([0, 0, 1, 1, 2, -1])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(pred, target, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    m = metrics_from_confusion(cm, ["a", "b", "c", "d"])
    assert m["OA"] == pytest.approx(3 / 5)
    assert m["mAcc"] == pytest.approx((1 / 2 + 1 + 0) / 3)          # d absent from target
    assert m["iou"]["a"] == pytest.approx(1 / 3)                    # tp 1, fn 1, fp 1
    assert m["iou"]["b"] == pytest.approx(2 / 3)                    # tp 2, fp 1
    assert m["iou"]["c"] == 0.0
    assert math.isnan(m["iou"]["d"])                                # absent everywhere
    assert m["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)      # d excluded
    assert m["support"] == {"a": 2, "b": 2, "c": 1, "d": 0}


def test_predicted_but_absent_class_counts_as_zero_iou():
    m = metrics_from_confusion(confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), 2))
    assert m["iou"] == {"0": 0.5, "1": 0.0} and m["mIoU"] == pytest.approx(0.25)
    assert m["mAcc"] == pytest.approx(0.5) and math.isnan(m["acc"]["1"])


def test_logits_are_argmaxed_in_float32_and_float64():
    for dtype in (torch.float32, torch.float64):
        logits = torch.tensor([[0.1, 2.0], [3.0, -1.0]], dtype=dtype)
        assert confusion_matrix(logits, torch.tensor([1, 1]), 2).tolist() == [[0, 0], [1, 1]]


def test_all_ignored_gives_nan_not_a_crash():
    m = metrics_from_confusion(confusion_matrix(torch.tensor([0, 1]), torch.tensor([-1, -1]), 2))
    assert math.isnan(m["OA"]) and math.isnan(m["mIoU"]) and math.isnan(m["mAcc"])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 80), st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_matches_numpy_loop_and_is_batch_independent(c, n, seed, chunks):
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(rng.integers(-1, c, n))
    pred = torch.from_numpy(rng.integers(0, c, n))
    oa, macc, iou, miou = _reference(pred, target, c)
    acc = ConfusionMatrix(c)
    for p, t in zip(pred.tensor_split(chunks), target.tensor_split(chunks)):
        acc.update(p, t)
    m = acc.compute()
    assert torch.equal(acc.matrix, confusion_matrix(pred, target, c))
    np.testing.assert_allclose([m["OA"], m["mAcc"], m["mIoU"]], [oa, macc, miou],
                               rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(list(m["iou"].values()), iou, rtol=1e-12, equal_nan=True)


def test_bad_input_is_named():
    with pytest.raises(InvalidInputError, match="target holds labels outside 0..2"):
        confusion_matrix(torch.tensor([0]), torch.tensor([3]), 3)
    with pytest.raises(InvalidInputError, match="pred holds labels"):
        confusion_matrix(torch.tensor([-2]), torch.tensor([0]), 3)
    with pytest.raises(InvalidInputError, match="equal length"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)
    with pytest.raises(InvalidInputError, match="logits"):
        confusion_matrix(torch.zeros(2, 4), torch.tensor([0, 1]), 3)
    with pytest.raises(InvalidInputError, match="num_classes"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(InvalidInputError, match="target must be an integer"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0.0]), 2)
    with pytest.raises(InvalidInputError, match="class_names"):
        ConfusionMatrix(3, class_names=["a"])
