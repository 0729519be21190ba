"""Head losses: weighted cross-entropy and Lovász-softmax against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geo3d.errors import InvalidInputError
from geo3d.models import create
from geo3d.models.heads import ClassificationHead, SegmentationHead
from geo3d.models.heads.losses import cross_entropy, lovasz_softmax

DTYPES = [torch.float32, torch.float64]


def _mean_jaccard_loss(pred: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    """mean over classes present in ``y`` of 1 - IoU(pred == c, y == c) (numpy)."""
    losses = []
    for c in range(num_classes):
        t, p = y == c, pred == c
        if t.any():
            losses.append(1.0 - (t & p).sum() / (t | p).sum())
    return float(np.mean(losses))


def _lovasz_bruteforce(probs: np.ndarray, y: np.ndarray) -> float:
    """The Lovász extension of the Jaccard loss, from its definition with Python sets:
    sort the errors, and weigh each by the loss increase of adding its point to the set
    of mispredicted points (Berman et al. 2018, eq. 8-9)."""
    losses = []
    for c in range(probs.shape[1]):
        fg = {i for i in range(len(y)) if y[i] == c}
        if not fg:
            continue
        errors = [abs((1.0 if i in fg else 0.0) - probs[i, c]) for i in range(len(y))]
        order = sorted(range(len(y)), key=lambda i: -errors[i])

        def jaccard_loss(mispredicted: set) -> float:
            return 1.0 - len(fg - mispredicted) / len(fg | mispredicted)

        total, chosen, prev = 0.0, set(), 0.0
        for i in order:
            chosen.add(i)
            cur = jaccard_loss(chosen)
            total += errors[i] * (cur - prev)
            prev = cur
        losses.append(total)
    return float(np.mean(losses))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lovasz_equals_jaccard_loss_on_hard_predictions(dtype):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (200,), generator=g)
    y[:3] = 4  # class 4 present
    noise = torch.randint(0, 6, (200,), generator=g)
    pred = torch.where(torch.rand(200, generator=g) < 0.7, y, noise)
    logits = torch.full((200, 6), -1e4, dtype=dtype).scatter(1, pred[:, None], 1e4)
    got = lovasz_softmax(logits, y)
    assert got.dtype == dtype
    ref = _mean_jaccard_loss(pred.numpy(), y.numpy(), 6)
    assert float(got) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lovasz_matches_bruteforce_definition(dtype):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 4, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, 3, (40,), generator=g)  # class 3 absent: left out
    got = float(lovasz_softmax(logits, y))
    ref = _lovasz_bruteforce(logits.double().softmax(1).numpy(), y.numpy())
    assert got == pytest.approx(ref, rel=1e-5 if dtype == torch.float32 else 1e-12)


def test_lovasz_ignores_minus_one_and_has_gradients():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(30, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (30,), generator=g)
    y_ign = y.clone()
    y_ign[::4] = -1
    keep = y_ign >= 0
    torch.testing.assert_close(lovasz_softmax(logits, y_ign), lovasz_softmax(logits[keep], y[keep]))
    loss = lovasz_softmax(logits, y_ign)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[keep].abs().sum() > 0
    assert (logits.grad[~keep] == 0).all()
    zero = lovasz_softmax(logits, torch.full((30,), -1))
    assert float(zero.detach()) == 0.0 and zero.requires_grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_cross_entropy_matches_manual_formula(dtype):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(50, 4, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(-1, 4, (50,), generator=g)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    keep = y >= 0
    nll = -logits.double().log_softmax(1)[keep, y[keep]]
    ref = (w.double()[y[keep]] * nll).sum() / w.double()[y[keep]].sum()
    got = cross_entropy(logits, y, w)
    assert got.dtype == dtype
    assert float(got) == pytest.approx(float(ref), rel=1e-5 if dtype == torch.float32 else 1e-12)


def test_segmentation_head_loss_is_weighted_ce_plus_lovasz():
    torch.manual_seed(0)
    w = [1.0, 2.0, 3.0]
    head = SegmentationHead(8, 3, hidden=(), class_weights=w, lovasz_weight=0.5)
    plain = SegmentationHead(8, 3, hidden=())
    assert set(head.state_dict()) == set(plain.state_dict())  # weights are not state
    logits = torch.randn(20, 3)
    data = type("D", (), {"y": torch.randint(0, 3, (20,))})()
    expected = cross_entropy(logits, data.y, torch.tensor(w)) + 0.5 * lovasz_softmax(logits, data.y)
    torch.testing.assert_close(head.loss(logits, data), expected)
    torch.testing.assert_close(plain.loss(logits, data),
                               torch.nn.functional.cross_entropy(logits, data.y))
    assert head.double().loss(logits.double(), data).dtype == torch.float64


def test_classification_head_class_weights():
    head = ClassificationHead(4, 2, hidden=(), class_weights=[1.0, 3.0])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    data = type("D", (), {"y": torch.tensor([1, 1])})()
    torch.testing.assert_close(head.loss(logits, data),
                               torch.nn.functional.cross_entropy(logits, data.y))  # one class: same
    data.y = torch.tensor([0, 1])
    nll = -logits.log_softmax(1)[[0, 1], [0, 1]]
    torch.testing.assert_close(head.loss(logits, data), (nll * torch.tensor([1.0, 3.0])).sum() / 4)


@pytest.mark.parametrize("bad", [[1.0, 2.0], [1.0, -1.0, 1.0], [1.0, float("nan"), 1.0], "abc",
                                 [[1.0, 1.0, 1.0]]])
def test_bad_class_weights_are_rejected(bad):
    with pytest.raises(InvalidInputError, match="class_weights"):
        SegmentationHead(8, 3, class_weights=bad)
    with pytest.raises(InvalidInputError, match="class_weights"):
        ClassificationHead(8, 3, class_weights=bad)


@pytest.mark.parametrize("bad", [-0.1, float("inf"), True, "1"])
def test_bad_lovasz_weight_is_rejected(bad):
    with pytest.raises(InvalidInputError, match="lovasz_weight"):
        SegmentationHead(8, 3, lovasz_weight=bad)


@pytest.mark.parametrize("name", ["pointnet2_seg", "dgcnn_seg"])
def test_segmentation_factories_pass_loss_options(name):
    model = create(name, num_classes=3, width=4, class_weights=[1.0, 2.0, 3.0], lovasz_weight=2.0)
    assert model.head.class_weights.tolist() == [1.0, 2.0, 3.0]
    assert model.head.lovasz_weight == 2.0
    default = create(name, num_classes=3, width=4)
    assert default.head.class_weights is None and default.head.lovasz_weight == 0.0
    default.load_state_dict(model.state_dict())  # same state either way


def test_frequency_class_weights_favour_rare_classes():
    from geo3d.models.heads.losses import frequency_class_weights

    labels = [torch.tensor([0] * 90 + [1] * 10), torch.tensor([0, -1, 7])]  # 7, -1: skipped
    w = frequency_class_weights(labels, 3)
    assert len(w) == 3 and sum(w) / 3 == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx((91 / 10) ** 0.5)
    assert w[2] == pytest.approx(w[1])  # absent: the rarest seen class's weight
    with pytest.raises(InvalidInputError, match="no label"):
        frequency_class_weights([torch.tensor([-1])], 3)
