"""Scene builders: geometry and colours follow the data (no rendering here)."""

import matplotlib
import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import box_corners
from geo3d.sim.classes import CLASS_COLORS, CLASSES
from geo3d.viewers import (Scene, boxes, default_bones, hand, hands, mesh, points,
                           scene_from_data, tracks)
from geo3d.viewers.palettes import CORRECT_COLOR, NONE_COLOR, WRONG_COLOR, label_palette


def _colors(scene, name):
    layer = next(l for l in scene.layers if l.name == name)
    g = layer.geometry
    return np.asarray(g.vertex_colors if hasattr(g, "vertex_colors") and not hasattr(g, "points")
                      else g.colors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_points_by_label_use_the_class_colours_and_legend(dtype):
    y = torch.tensor([0, 3, 7, -1, 3])
    scene = points(Data(pos=torch.randn(5, 3, dtype=dtype), y=y))
    rgb = _colors(scene, "points")
    assert np.allclose(rgb[:3], np.asarray(CLASS_COLORS)[[0, 3, 7]])
    assert np.allclose(rgb[3], NONE_COLOR)
    assert [n for n, _ in scene.legend] == [CLASSES[0], CLASSES[3], CLASSES[7]]
    assert dict(scene.legend)["ground"] == pytest.approx(CLASS_COLORS[3])


def test_label_palette_extends_past_the_simulator_classes():
    pal = label_palette(12)
    assert pal.shape == (12, 3) and np.allclose(pal[:8], CLASS_COLORS)
    assert len({tuple(c) for c in pal}) == 12


def test_error_colouring_marks_wrong_points():
    data = Data(pos=torch.zeros(4, 3), y=torch.tensor([0, 1, 2, -1]))
    scene = points(data, "error", prediction=Data(y=torch.tensor([0, 2, 2, 1])))
    rgb = _colors(scene, "points")
    assert np.allclose(rgb, [CORRECT_COLOR, WRONG_COLOR, CORRECT_COLOR, NONE_COLOR])


def test_scores_map_to_viridis_from_zero_to_one():
    data = Data(pos=torch.zeros(3, 3))
    rgb = _colors(points(data, "score", values=torch.tensor([0.0, 0.5, 1.0])), "points")
    ref = np.asarray(matplotlib.colormaps["viridis"]([0.0, 0.5, 1.0]))[:, :3]
    assert np.allclose(rgb, ref)


def test_auto_picks_predictions_then_labels_then_intensity():
    data = Data(pos=torch.zeros(2, 3), x=torch.tensor([[0.1], [0.9]]), y=torch.tensor([0, 1]))
    pred = Data(y=torch.tensor([2, 2]))
    assert np.allclose(_colors(points(data, prediction=pred), "points"), [CLASS_COLORS[2]] * 2)
    assert np.allclose(_colors(points(data), "points"), np.asarray(CLASS_COLORS)[[0, 1]])
    del data.y
    legend = points(data).legend
    assert legend[0][0].startswith("intensity") and legend[-1][0].startswith("intensity")


@pytest.mark.parametrize("pos", [torch.full((3, 3), float("nan")), torch.zeros(3, 2), None])
def test_bad_points_name_the_argument(pos):
    with pytest.raises(InvalidInputError, match="data.pos"):
        points(Data(pos=pos))


def test_unknown_colouring_and_missing_values_are_refused():
    with pytest.raises(InvalidInputError, match="color_by"):
        points(Data(pos=torch.zeros(1, 3)), "rainbow")
    with pytest.raises(InvalidInputError, match="label"):
        points(Data(pos=torch.zeros(1, 3)), "label")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gt_box_edges_join_the_corners_and_heading_points_forward(dtype):
    b = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.7]], dtype=dtype)
    scene = boxes(b, torch.tensor([1]))
    layer = scene.layers[0]
    assert layer.group == "gt" and layer.name == "gt_boxes"
    pts = np.asarray(layer.geometry.points)
    corners = box_corners(b.double())[0].numpy()
    for c in corners:  # every corner is a line end
        assert np.linalg.norm(pts - c, axis=1).min() < 1e-9
    heading = pts[-2:]  # last segment: top centre -> middle of the top front edge
    direction = heading[1] - heading[0]
    assert np.allclose(direction[:2] / np.linalg.norm(direction[:2]), [np.cos(0.7), np.sin(0.7)])
    assert np.allclose(np.asarray(layer.geometry.colors), CLASS_COLORS[1])
    assert scene.legend == (("pedestrian", CLASS_COLORS[1]),)


def test_predicted_boxes_are_dashed_and_lighter():
    b = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
    gt, pred = boxes(b, torch.tensor([0])), boxes(b, torch.tensor([0]), predicted=True)
    lg, lp = gt.layers[0].geometry, pred.layers[0].geometry
    assert pred.layers[0].group == "predictions"
    assert len(lp.lines) > 2 * len(lg.lines)
    # dashes cover about half of each edge: total drawn length below the solid one
    def length(ls):
        p, l = np.asarray(ls.points), np.asarray(ls.lines)
        return np.linalg.norm(p[l[:, 0]] - p[l[:, 1]], axis=1).sum()
    assert 0.4 * length(lg) < length(lp) < 0.7 * length(lg)
    assert (np.asarray(lp.colors) > np.asarray(lg.colors)[0]).all()


def test_track_trails_follow_the_ego_pose():
    """A static world object seen from a sensor moving +1 m/frame: one fixed point."""
    frames = []
    for t in range(4):
        pose = torch.eye(4)
        pose[0, 3] = float(t)
        frames.append(Data(boxes=torch.tensor([[10.0 - t, 0, 0, 4, 2, 1.5, 0],
                                                [5.0, 1.0 * t, 0, 1, 1, 1, 0]]),
                           track_id=torch.tensor([3, 8]), ego_pose=pose[None]))
    layer = tracks(frames).layers[0]
    pts, lines = np.asarray(layer.geometry.points), np.asarray(layer.geometry.lines)
    assert len(lines) == 6  # two tracks seen in 4 frames
    static = pts[:4]
    assert np.allclose(static, [[10.0 - 3, 0, 0]] * 4)
    moving = pts[4:]  # ego moves +x by 1/frame, object moves +y: in the last frame
    assert np.allclose(moving, [[5.0 + t - 3, t, 0] for t in range(4)])


def test_tracks_need_ids():
    with pytest.raises(InvalidInputError, match="track_id"):
        tracks([Data(boxes=torch.zeros(1, 7))])


def test_default_bones_form_the_21_joint_tree():
    bones = default_bones()
    assert len(bones) == 20
    parents = {c: p for p, c in bones}
    assert sorted(parents) == list(range(1, 21))
    for finger in range(5):  # each finger chains from the wrist
        base = 1 + 4 * finger
        assert parents[base] == 0
        assert [parents[base + k] for k in (1, 2, 3)] == [base, base + 1, base + 2]


def test_hands_side_by_side_do_not_overlap():
    joints = torch.rand(21, 3) * 0.1
    scene = hands(joints, joints + 0.002)
    names = [l.name for l in scene.layers]
    assert names == ["gt_hand_bones", "gt_hand_joints", "pred_hand_bones", "pred_hand_joints"]
    gt = np.asarray(scene.layers[0].geometry.points)
    pred = np.asarray(scene.layers[2].geometry.points)
    assert pred[:, 1].max() < gt[:, 1].min()
    assert len(scene.layers[0].geometry.lines) == 20
    assert scene.kind == "object"


def test_hand_rejects_bones_outside_the_joints():
    with pytest.raises(InvalidInputError, match="bones"):
        hand(torch.zeros(5, 3), bones=[(0, 7)])


def _tetra():
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]])
    face = torch.tensor([[0, 0, 0, 1], [1, 1, 2, 2], [2, 3, 3, 3]])
    return pos, face


def test_mesh_correspondence_colours_come_from_the_template():
    pos, face = _tetra()
    template = pos * 2 + 1
    corr = torch.tensor([3, 2, 1, 0])
    m = mesh(Data(pos=pos, face=face), "correspondence", correspondence=corr,
             template_pos=template).layers[0].geometry
    expected = ((template - template.min(0).values) / (template.max(0).values
                                                       - template.min(0).values))[corr]
    assert np.allclose(np.asarray(m.vertex_colors), expected.numpy())
    assert len(m.triangles) == 4 and m.has_vertex_normals()


def test_mesh_parts_and_bad_faces():
    pos, face = _tetra()
    scene = mesh(Data(pos=pos, face=face, y=torch.tensor([0, 0, 1, 1])), names=["seat", "leg"])
    assert scene.legend == (("seat", CLASS_COLORS[0]), ("leg", CLASS_COLORS[1]))
    with pytest.raises(InvalidInputError, match="face"):
        mesh(Data(pos=pos, face=face + 4))


def test_scene_from_data_layers_and_groups():
    data = Data(pos=torch.randn(50, 3), y=torch.randint(0, 8, (50,)),
                boxes=torch.tensor([[0.0, 0, 0, 4, 2, 1.5, 0]]), box_labels=torch.tensor([0]))
    pred = Data(y=torch.randint(0, 8, (50,)), boxes=torch.tensor([[0.5, 0, 0, 4, 2, 1.5, 0]]),
                box_labels=torch.tensor([0]))
    scene = scene_from_data(data, pred)
    assert scene.groups == ("points", "gt", "predictions")
    assert [l.name for l in scene.only(["gt"]).layers] == ["gt_boxes"]
    with pytest.raises(InvalidInputError, match="unique"):
        scene + scene


def test_scene_bounds_ignore_far_outliers():
    pos = torch.cat([torch.rand(5000, 3), torch.tensor([[1000.0, 0, 0]])])
    lo, hi = points(Data(pos=pos)).bounds()
    assert hi[0] < 2
    assert Scene().bounds() is None
