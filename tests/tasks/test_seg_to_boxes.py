"""segmentation_to_boxes: clusters of object points become boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import points_in_boxes
from geo3d.tasks.seg_to_boxes import segmentation_to_boxes


def _block(centre, size, yaw, n, g):
    """``n`` points uniform in an upright box."""
    local = (g.random((n, 3)) - 0.5) * np.asarray(size)
    c, s = math.cos(yaw), math.sin(yaw)
    xy = local[:, :2] @ np.array([[c, s], [-s, c]])
    return np.concatenate([xy, local[:, 2:]], 1) + np.asarray(centre)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_two_separated_clusters_give_two_boxes(dtype):
    g = np.random.default_rng(0)
    car = _block((10.0, -3.0, 0.8), (4.0, 1.8, 1.5), 0.5, 800, g)
    ped = _block((-6.0, 7.0, 0.9), (0.6, 0.5, 1.7), 0.0, 200, g)
    ground = _block((0.0, 0.0, 0.0), (40.0, 40.0, 0.01), 0.0, 500, g)
    pos = torch.from_numpy(np.concatenate([car, ped, ground])).to(dtype)
    labels = torch.cat([torch.zeros(800), torch.ones(200), torch.full((500,), 3)]).long()
    scores = torch.cat([torch.full((800,), 0.9), torch.full((200,), 0.6), torch.ones(500)]).to(dtype)
    out = segmentation_to_boxes(pos, labels, scores=scores)
    assert out.boxes.shape == (2, 7) and out.boxes.dtype == torch.float32
    assert out.box_labels.tolist() == [0, 1]
    torch.testing.assert_close(out.box_scores, torch.tensor([0.9, 0.6]))
    for box, pts in zip(out.boxes, (car, ped)):  # the box centre is the middle of the extents
        np.testing.assert_allclose(box[:3].numpy(), pts.mean(0), atol=0.15)
    # the car's box follows its heading (mod pi) and size, and holds all its points
    yaw = float(out.boxes[0, 6])
    assert abs((yaw - 0.5 + math.pi / 2) % math.pi - math.pi / 2) < 0.05
    np.testing.assert_allclose(out.boxes[0, 3:6].numpy(), (4.0, 1.8, 1.5), atol=0.15)
    inside = points_in_boxes(pos.float(), out.boxes[:1] + torch.tensor([0, 0, 0, 1e-3, 1e-3, 1e-3, 0]))
    assert bool((inside[:800] == 0).all()) and bool((inside[1000:] == -1).all())


def test_clusters_split_by_gap_merge_when_touching():
    g = np.random.default_rng(1)
    a = _block((0.0, 0.0, 0.5), (1.0, 1.0, 1.0), 0.0, 100, g)
    b = _block((3.0, 0.0, 0.5), (1.0, 1.0, 1.0), 0.0, 100, g)  # 2 m gap: two boxes
    labels = torch.zeros(200, dtype=torch.long)
    out = segmentation_to_boxes(torch.from_numpy(np.concatenate([a, b])), labels, cell=0.5)
    assert sorted(round(float(x)) for x in out.boxes[:, 0]) == [0, 3]
    out = segmentation_to_boxes(torch.from_numpy(np.concatenate([a, b])), labels, cell=2.5)
    assert out.boxes.shape[0] == 1 and abs(float(out.boxes[0, 3]) - 4.0) < 0.1


def test_small_clusters_and_other_classes_are_dropped():
    pos = torch.rand(10, 3)
    out = segmentation_to_boxes(pos, torch.zeros(10, dtype=torch.long), min_points=11)
    assert out.boxes.shape == (0, 7) and out.box_labels.shape == (0,)
    out = segmentation_to_boxes(pos, torch.full((10,), 5, dtype=torch.long))
    assert out.boxes.shape == (0, 7)
    single = segmentation_to_boxes(pos[:1], torch.zeros(1, dtype=torch.long), min_points=1)
    assert single.boxes.shape == (1, 7) and bool((single.boxes[0, 3:6] == 0.1).all())


def test_errors():
    pos = torch.rand(4, 3)
    with pytest.raises(InvalidInputError, match="labels"):
        segmentation_to_boxes(pos, torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="labels"):
        segmentation_to_boxes(pos, torch.zeros(4))
    with pytest.raises(InvalidInputError, match="pos"):
        segmentation_to_boxes(torch.full((4, 3), float("nan")), torch.zeros(4, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="cell"):
        segmentation_to_boxes(pos, torch.zeros(4, dtype=torch.long), cell=0)
    with pytest.raises(InvalidInputError, match="scores"):
        segmentation_to_boxes(pos, torch.zeros(4, dtype=torch.long), scores=torch.ones(3))
    with pytest.raises(InvalidInputError, match="min_points"):
        segmentation_to_boxes(pos, torch.zeros(4, dtype=torch.long), min_points=0)
