"""Bird's-eye-view pictures: pixels land where the geometry is."""

import numpy as np
import open3d as o3d
import pytest
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.sim.classes import CLASS_COLORS
from geo3d.viewers.bev import bev_image, save_bev


def test_point_lands_on_the_expected_pixel_in_its_class_colour():
    data = Data(pos=torch.tensor([[10.0, 5.0, 0.0]]), y=torch.tensor([1]))
    img = bev_image(data, extent=20.0, resolution=0.5)
    assert img.shape == (80, 80, 3) and img.dtype == np.uint8
    row, col = int((20 - 10) / 0.5), int((20 - 5) / 0.5)  # forward is up, left is left
    assert tuple(img[row, col]) == tuple((np.array(CLASS_COLORS[1]) * 255).astype(np.uint8))
    lit = np.argwhere(img.sum(-1) != img[0, 0].sum())
    assert lit.tolist() == [[row, col]]


def test_box_outline_and_heading_are_drawn():
    data = Data(pos=torch.zeros(0, 3), boxes=torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]]))
    img = bev_image(data, extent=5.0, resolution=0.1)
    white = np.all(img == 255, axis=-1)
    assert white[10:90, 40].any() and white[30, 40:61].all()  # front edge at x=+2: row 30
    assert white[30:50, 50].all()  # heading tick from the centre to the front
    assert not white[55:70, 50].any()  # and not to the back


def test_save_bev_writes_a_readable_png(tmp_path):
    data = Data(pos=torch.randn(500, 3) * 5)
    path = save_bev(data, tmp_path / "bev.png", extent=10.0, resolution=0.1)
    img = np.asarray(o3d.io.read_image(str(path)))
    assert img.shape == (200, 200, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["bev.png"]


@pytest.mark.parametrize("pos", [torch.zeros(4, 2), torch.full((3, 3), float("nan")), None])
def test_bad_input(pos):
    with pytest.raises(InvalidInputError, match="data.pos"):
        bev_image(Data(pos=pos))


def test_bad_extent():
    with pytest.raises(InvalidInputError, match="extent"):
        bev_image(Data(pos=torch.zeros(1, 3)), extent=0)
    with pytest.raises(InvalidInputError, match="8192"):
        bev_image(Data(pos=torch.zeros(1, 3)), extent=1000, resolution=0.01)
