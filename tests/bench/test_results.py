"""ResultRow schema checks and the Pareto front, against a brute-force definition."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo3d.bench import ResultRow, load_rows, pareto_front
from geo3d.errors import FileFormatError, InvalidInputError


def _dominated(i, costs, values, higher):
    s = 1 if higher else -1
    return any(costs[j] <= costs[i] and s * values[j] >= s * values[i]
               and (costs[j] < costs[i] or s * values[j] > s * values[i])
               for j in range(len(costs)) if j != i)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=12),
       st.booleans())
def test_pareto_front_is_exactly_the_undominated_points(points, higher):
    costs, values = [float(c) for c, _ in points], [float(v) for _, v in points]
    front = pareto_front(costs, values, higher)
    undominated = {i for i in range(len(points)) if not _dominated(i, costs, values, higher)}
    # every front point is undominated; every undominated point is on the front or an
    # exact duplicate of one that is
    assert set(front) <= undominated
    for i in undominated:
        assert any((costs[i], values[i]) == (costs[j], values[j]) for j in front)
    assert [costs[i] for i in front] == sorted(costs[i] for i in front)


def test_pareto_front_hand_case_and_nan():
    costs = [1.0, 2.0, 3.0, 1.5, float("nan")]
    values = [0.5, 0.7, 0.6, 0.4, 0.99]
    assert pareto_front(costs, values) == [0, 1]
    # lower is better: point 3 (0.4) beats point 0 (0.5) on value at a higher cost
    assert pareto_front(costs, values, higher_is_better=False) == [0, 3]
    with pytest.raises(InvalidInputError, match="length"):
        pareto_front([1.0], [1.0, 2.0])


def test_rows_round_trip_and_bad_rows_are_named():
    row = ResultRow(benchmark="segmentation", task="lidar", model="pointnet2_seg",
                    metric="mIoU", value=0.67, params=10, latency_ms=3.0)
    assert load_rows({"results": [row.to_dict()]}) == [row]
    with pytest.raises(FileFormatError, match="no 'results' list"):
        load_rows({"rows": []}, source="x.json")
    with pytest.raises(FileFormatError, match=r"results\[0\].*colour"):
        load_rows({"results": [{**row.to_dict(), "colour": 1}]})
    with pytest.raises(FileFormatError, match=r"results\[0\].*value"):
        load_rows({"results": [{**row.to_dict(), "value": "high"}]})
    with pytest.raises(InvalidInputError, match="model"):
        ResultRow(benchmark="b", task="t", model="", metric="m", value=math.pi)
