"""make_dataset: every registered name builds, with the channels a model needs, and
refuses tasks and options it has no data for."""

import pytest
import torch
from torch_geometric.data import Data

from geo3d.datasets.by_name import list_datasets, make_dataset
from geo3d.datasets.features import lidar_features
from geo3d.errors import InvalidInputError


def test_names():
    assert {"synthetic-lidar", "synthetic-shapes", "synthetic-meshes",
            "synthetic-hands"} <= set(list_datasets())
    with pytest.raises(InvalidInputError, match="unknown dataset 'nope'"):
        make_dataset("nope", "test", 1)


def test_lidar_features_option_gives_three_columns():
    plain = make_dataset("synthetic-lidar", "test", 1, num_points=512)
    rich = make_dataset("synthetic-lidar", "test", 1, num_points=512, features="lidar")
    a, b = plain.dataset[0], rich.dataset[0]
    assert (plain.in_channels, rich.in_channels) == (1, 3)
    assert a.x.shape == (512, 1) and b.x.shape == (512, 3)
    torch.testing.assert_close(b.x[:, 0], a.x[:, 0])  # the same subset, intensity first
    torch.testing.assert_close(b.x[:, 1], a.pos[:, 2])
    with pytest.raises(InvalidInputError, match="features"):
        make_dataset("synthetic-lidar", "test", 1, features="rgb")


def test_meshes_correspondence_and_parts():
    corr = make_dataset("synthetic-meshes", "test", 1)
    parts = make_dataset("synthetic-meshes", "test", 1, target="part")
    mesh = corr.dataset[0]
    assert corr.in_channels == 2 and mesh.x.shape[1] == 2 and mesh.face.shape[0] == 3
    assert len(corr.class_names) == mesh.pos.shape[0]  # one class per template vertex
    assert int(parts.dataset[0].y.max()) < len(parts.class_names) < len(corr.class_names)
    hks = make_dataset("synthetic-meshes", "test", 1, features="hks")
    assert hks.in_channels == 16 == hks.dataset[0].x.shape[1]
    for kwargs, match in (({"task": "classification"}, "per-vertex"), ({"features": "xyz"}, "features"),
                          ({"num_points": 10}, "num_points"), ({"target": "x"}, "target")):
        with pytest.raises(InvalidInputError, match=match):
            make_dataset("synthetic-meshes", "test", 1, **kwargs)


def test_hands_resolution_keeps_the_field_of_view():
    small = make_dataset("synthetic-hands", "test", 1, task="hand_pose", width=80, height=60)
    frame = small.dataset[0]
    assert len(small.class_names) == 21 and frame.joints.shape == (21, 3)
    k = frame.intrinsics[0]
    assert float(k[0, 0]) == pytest.approx(277.1 / 4, rel=1e-4)
    assert frame.pos.shape[0] <= 80 * 60
    with pytest.raises(InvalidInputError, match="hand_pose"):
        make_dataset("synthetic-hands", "test", 1)


def test_lidar_features_checks_its_input():
    with pytest.raises(InvalidInputError, match="intensity"):
        lidar_features(Data(pos=torch.zeros(4, 3)))
    with pytest.raises(InvalidInputError, match="intensity"):
        lidar_features(Data(pos=torch.zeros(4, 3), x=torch.zeros(4, 2)))
