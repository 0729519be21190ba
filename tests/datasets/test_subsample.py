"""SubsampledPoints: a fixed, seeded subset of each item's points."""

import pytest
import torch
from torch_geometric.data import Data

from geo3d.datasets import SubsampledPoints
from geo3d.errors import InvalidInputError


def _items():
    pos = torch.arange(30, dtype=torch.float32).view(10, 3)
    return [Data(pos=pos, x=pos[:, :1], y=torch.arange(10), boxes=torch.zeros(2, 7)),
            Data(pos=pos[:3], y=torch.tensor([4]))]


def test_keeps_a_seeded_sorted_subset_of_per_point_attributes():
    items = _items()
    view = SubsampledPoints(items, num_points=4, seed=1)
    a, b = view[0], view[0]
    assert torch.equal(a.pos, b.pos) and a.pos.shape == (4, 3)
    rows = a.y  # y was the row index: the same rows are taken from every attribute
    assert torch.equal(rows, rows.sort().values) and len(set(rows.tolist())) == 4
    assert torch.equal(a.pos, items[0].pos[rows]) and torch.equal(a.x, items[0].x[rows])
    assert "boxes" not in a  # only the kept keys
    assert not torch.equal(SubsampledPoints(items, 4, seed=2)[0].y, rows)
    small = view[1]  # fewer points than asked: whole; a graph label stays as it is
    assert small.pos.shape == (3, 3) and small.y.tolist() == [4]
    assert items[0].pos.shape == (10, 3), "the input is not changed"


def test_none_keeps_everything_and_bad_arguments():
    assert SubsampledPoints(_items())[0].pos.shape == (10, 3)
    assert len(SubsampledPoints(_items(), 2)) == 2
    for kwargs, match in [({"num_points": 0}, "num_points"), ({"num_points": 2.5}, "num_points"),
                          ({"seed": -1}, "seed"), ({"keys": ()}, "keys")]:
        with pytest.raises(InvalidInputError, match=match):
            SubsampledPoints(_items(), **kwargs)


def test_transform_runs_on_the_cut_item_and_must_be_callable():
    from geo3d.datasets.features import lidar_features

    view = SubsampledPoints(_items(), num_points=4, seed=1, transform=lidar_features)
    item = view[0]
    assert item.x.shape == (4, 3)
    expect_range = item.pos[:, :2].norm(dim=1) / 10.0
    torch.testing.assert_close(item.x[:, 1], item.pos[:, 2])
    torch.testing.assert_close(item.x[:, 2], expect_range)
    with pytest.raises(InvalidInputError, match="transform"):
        SubsampledPoints(_items(), transform=3)
