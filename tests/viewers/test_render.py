"""Offscreen rendering: pixels appear where the camera maths says, in the palette colours."""

import imageio.v3 as iio
import numpy as np
import open3d as o3d
import pytest
import torch
from open3d.visualization import rendering
from torch_geometric.data import Data

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.viewers import (Camera, Scene, boxes, camera_preset, points, project, render,
                           render_image, render_sequence)
from geo3d.viewers.offscreen import BACKGROUND, _renderer

W, H = 160, 120  # one renderer size for the whole module (creating one costs ~1 s)
BG = np.round(np.asarray(BACKGROUND) * 255)


def _mask(img, rgb, tol=2):
    return (np.abs(img.astype(int) - np.round(np.asarray(rgb) * 255)) <= tol).all(-1)


def test_red_box_is_red_exactly_where_it_projects():
    b = torch.tensor([[4.0, -3.0, 0.0, 6.0, 3.0, 2.0, 0.4]])
    scene = Scene(kind="lidar") + boxes(b, color=(1.0, 0.0, 0.0), line_width=1.0)
    cam = camera_preset("bev", (-10, -10, -2), (10, 10, 2), aspect=W / H)
    img = render_image(scene, W, H, cam, legend=False)
    red = _mask(img, (1, 0, 0), tol=60)
    assert red.sum() > 40
    from geo3d.geometry.boxes import box_corners
    pix = project(cam, box_corners(b)[0].numpy(), W, H)[:, :2]
    rows, cols = np.nonzero(red)
    assert cols.min() >= pix[:, 0].min() - 2 and cols.max() <= pix[:, 0].max() + 2
    assert rows.min() >= pix[:, 1].min() - 2 and rows.max() <= pix[:, 1].max() + 2
    for c, r in pix[:4]:  # a red pixel next to every corner
        assert red[max(int(r) - 2, 0):int(r) + 3, max(int(c) - 2, 0):int(c) + 3].any()
    # the ego (origin) lies outside the box: background there
    c0, r0 = project(cam, np.zeros((1, 3)), W, H)[0, :2].astype(int)
    assert not red[r0 - 1:r0 + 2, c0 - 1:c0 + 2].any()


@pytest.mark.parametrize("preset", ["chase", "iso", "side"])
def test_perspective_points_land_on_their_projection(preset):
    pts = torch.tensor([[3.0, 2.0, 0.5], [-2.0, -1.0, 1.0], [1.0, -3.0, -0.5]])
    y = torch.tensor([0, 1, 7])
    scene = points(Data(pos=pts, y=y), point_size=5.0)
    cam = camera_preset(preset, (-4, -4, -1), (4, 4, 1), aspect=W / H)
    img = render_image(scene, W, H, cam, legend=False)
    for p, label in zip(project(cam, pts.numpy(), W, H), y):
        from geo3d.sim.classes import CLASS_COLORS
        rows, cols = np.nonzero(_mask(img, CLASS_COLORS[label]))
        assert len(rows), f"class {label} not drawn"
        assert abs(cols.mean() + 0.5 - p[0]) < 1.5 and abs(rows.mean() + 0.5 - p[1]) < 1.5


def test_project_matches_open3d_camera_matrices():
    cam = Camera(center=(1, 2, 0), eye=(-6, 3, 4), fov=50)
    o3d_cam = _renderer(W, H).scene.camera
    cam.apply(o3d_cam, W, H)
    pts = np.array([[0.0, 0, 0], [2, 3, 1], [1, 2, 0]])
    clip = (np.asarray(o3d_cam.get_projection_matrix()) @ np.asarray(o3d_cam.get_view_matrix())
            @ np.c_[pts, np.ones(3)].T).T
    ndc = clip[:, :2] / clip[:, 3:]
    ref = np.stack([(ndc[:, 0] + 1) / 2 * W, (1 - ndc[:, 1]) / 2 * H], 1)
    assert np.allclose(project(cam, pts, W, H)[:, :2], ref, atol=1e-3)


def test_every_legend_colour_appears():
    rng = np.random.default_rng(0)
    y = torch.arange(8).repeat_interleave(20)
    pos = torch.tensor(rng.uniform(-8, 8, (160, 3)), dtype=torch.float32)
    scene = points(Data(pos=pos, y=y), point_size=3.0)
    img = render_image(scene, W, H, legend=False)
    assert len(scene.legend) == 8
    for name, rgb in scene.legend:
        assert _mask(img, rgb).sum() >= 4, name


def test_legend_is_drawn_with_its_swatches():
    legend = (("car", (0.39, 0.59, 0.96)), ("vegetation", (0.0, 0.69, 0.0)))
    img = render_image(Scene(legend=legend), W, H)
    for _, rgb in legend:
        assert _mask(img, rgb, tol=1).sum() >= 100  # a 12 x 12 swatch
    assert not _mask(render_image(Scene(legend=legend), W, H, legend=False), legend[0][1]).any()


@pytest.mark.parametrize("scene", [Scene(), points(Data(pos=torch.zeros(0, 3)))])
def test_empty_scene_renders_the_background(scene):
    img = render_image(scene, W, H, legend=False)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert (np.abs(img.astype(int) - BG) <= 1).all()


def test_render_writes_a_png_atomically(tmp_path):
    scene = points(Data(pos=torch.randn(100, 3)))
    path = render(scene, tmp_path / "p.png", W, H, camera="iso")
    assert np.asarray(o3d.io.read_image(str(path))).shape == (H, W, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_render_refuses_bad_arguments(tmp_path):
    scene = Scene()
    with pytest.raises(InvalidInputError, match="png"):
        render(scene, tmp_path / "p.jpg", W, H)
    with pytest.raises(InvalidInputError, match="width"):
        render_image(scene, 0, H)
    with pytest.raises(InvalidInputError, match="camera"):
        render_image(scene, W, H, camera="fisheye")
    with pytest.raises(InvalidInputError, match="background"):
        render_image(scene, W, H, background=(2, 0, 0))
    with pytest.raises(FileFormatError, match="does not exist"):
        render(scene, tmp_path / "missing" / "p.png", W, H)


def test_sequence_to_gif(tmp_path):
    scenes = [points(Data(pos=torch.tensor([[float(t), 0.0, 0.0]]), y=torch.tensor([1])),
                     point_size=4.0) for t in range(3)]
    path = render_sequence(scenes, tmp_path / "s.gif", W, H, camera="bev", legend=False)
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (3, H, W)
    assert not np.array_equal(frames[0], frames[2])  # the point moves


def test_mp4_writes_or_says_what_is_missing(tmp_path):
    scenes = [Scene()]
    try:
        render_sequence(scenes, tmp_path / "s.mp4", W, H)
    except FileFormatError as exc:
        assert "FFmpeg" in str(exc)
    else:
        assert (tmp_path / "s.mp4").stat().st_size > 0
