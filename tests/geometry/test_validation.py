"""Shared input checks: each names the argument and the fault."""

import pytest
import torch

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_batch, check_index, check_points, check_positive


def test_check_points_accepts_good_input_and_returns_it():
    for dtype in (torch.float32, torch.float64):
        t = torch.zeros(5, 3, dtype=dtype)
        assert check_points(t, "pos") is t
    assert check_points(torch.zeros(0, 3), "pos").shape == (0, 3)
    assert check_points(torch.zeros(4, 7), "x", dim=None).shape == (4, 7)


@pytest.mark.parametrize(
    "value, match",
    [
        ([[0.0, 0.0, 0.0]], "torch.Tensor"),
        (torch.zeros(3), r"shape \[N, 3\]"),
        (torch.zeros(4, 2), r"shape \[N, 3\]"),
        (torch.zeros(4, 3, dtype=torch.long), "floating"),
        (torch.tensor([[0.0, float("nan"), 0.0]]), "NaN or Inf"),
        (torch.tensor([[0.0, float("inf"), 0.0]]), "NaN or Inf"),
    ],
)
def test_check_points_rejects(value, match):
    with pytest.raises(InvalidInputError, match="pos") as info:
        check_points(value, "pos")
    assert info.match(match)


def test_check_points_empty_when_forbidden():
    with pytest.raises(InvalidInputError, match="empty"):
        check_points(torch.zeros(0, 3), "pos", allow_empty=False)


def test_check_batch():
    check_batch(None, 3)
    check_batch(torch.tensor([0, 0, 1]), 3)
    check_batch(torch.zeros(0, dtype=torch.long), 0)
    for bad, match in [(torch.tensor([0, 1]), "3 entries"), (torch.tensor([1, 0, 0]), "sorted"),
                       (torch.tensor([-1, 0, 0]), "non-negative"),
                       (torch.tensor([0.0, 0.0, 1.0]), "integer")]:
        with pytest.raises(InvalidInputError, match=match):
            check_batch(bad, 3)


def test_check_index_and_positive():
    with pytest.raises(InvalidInputError, match="idx must be 1-D"):
        check_index(torch.zeros(2, 2, dtype=torch.long), "idx")
    with pytest.raises(InvalidInputError, match="idx must be an integer"):
        check_index(torch.zeros(2, dtype=torch.bool), "idx")
    check_positive(0.5, "r")
    check_positive(0, "r", allow_zero=True)
    for bad in (0, -1, float("nan"), float("inf"), "a"):
        with pytest.raises(InvalidInputError, match="r must"):
            check_positive(bad, "r")
