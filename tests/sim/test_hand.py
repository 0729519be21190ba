"""The articulated hand: skeleton, kinematics, limits, sampling, skin and rendering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from geo3d.errors import InvalidInputError
from geo3d.sim.depth_camera import DepthCamera
from geo3d.sim.hand import (ANGLE_LIMITS, BONES, GESTURES, JOINTS, HandPose, HandShape,
                            bone_lengths, hand_joints, sample_pose, sample_shape)
from geo3d.sim.hand_render import HAND_LABELS, HandSceneConfig, hand_mesh, render_hand

SMALL_CAM = DepthCamera(width=96, height=72, fx=83.1, fy=83.1, depth_noise=5e-3, max_depth=3.0)


def test_joint_names_and_tree():
    assert len(JOINTS) == 21 and JOINTS[0] == "wrist"
    for f, finger in enumerate(("thumb", "index", "middle", "ring", "pinky")):
        names = JOINTS[1 + 4 * f: 5 + 4 * f]
        assert all(n.startswith(finger) for n in names) and names[-1].endswith("tip")
    assert len(BONES) == 20
    children = [c for _, c in BONES]
    assert sorted(children) == list(range(1, 21))  # every joint but the wrist has one parent
    assert all(p < c for p, c in BONES)


angle = st.floats(-30, 120, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(st.lists(angle, min_size=5, max_size=5), st.lists(angle, min_size=16, max_size=16))
def test_bones_are_rigid(thumb, fingers):
    shape = sample_shape(3)
    j = hand_joints(shape, HandPose(np.array(thumb), np.array(fingers).reshape(4, 4)))
    lengths = bone_lengths(j).reshape(5, 4)
    np.testing.assert_allclose(lengths[:, 1:], shape.phalanges, rtol=1e-9)
    np.testing.assert_allclose(lengths[:, 0], np.linalg.norm(shape.bases, axis=1), rtol=1e-9)


def test_flexion_goes_to_the_palm():
    t = HandShape.template()
    flat = HandPose(np.zeros(5), np.zeros((4, 4)))
    bent = np.zeros((4, 4))
    bent[:, 2] = 60  # PIP flexion
    j0, j1 = hand_joints(t, flat), hand_joints(t, HandPose(np.zeros(5), bent))
    tips = [8, 12, 16, 20]
    assert np.all(j1[tips, 2] > j0[tips, 2] + 0.01)  # towards +z (palmar)
    # index is on the thumb side (-y), pinky on the other
    assert j0[5, 1] < j0[9, 1] < j0[17, 1] and j0[1, 1] < 0


def test_samples_within_limits_and_varied():
    rng = np.random.default_rng(0)
    poses = [sample_pose(rng) for _ in range(200)]
    f = np.stack([p.fingers for p in poses])
    t = np.stack([p.thumb for p in poses])
    for c, key in enumerate(("finger_mcp_flex", "finger_mcp_abd", "finger_pip_flex", "finger_dip_flex")):
        lo, hi = ANGLE_LIMITS[key]
        assert f[..., c].min() >= lo and f[..., c].max() <= hi
        assert f[..., c].std() > 3  # not constant
    assert (t >= -15).all() and (t <= 80).all()
    shapes = [sample_shape(s) for s in range(20)]
    scales = np.array([s.scale for s in shapes])
    assert 0.85 <= scales.min() and scales.max() <= 1.15 and scales.std() > 0.03
    assert len(GESTURES) >= 10


def test_sample_errors():
    with pytest.raises(InvalidInputError, match="scale_range"):
        sample_shape(0, scale_range=(1.2, 1.0))
    with pytest.raises(InvalidInputError, match="rng"):
        sample_pose("x")


def test_skin_covers_the_bones():
    shape = sample_shape(1)
    j = hand_joints(shape, sample_pose(1))
    v, f = hand_mesh(shape, j)
    assert f.min() == 0 and f.max() == len(v) - 1
    # every bone's midpoint is within a finger radius of the skin
    tree = cKDTree(v)
    for p, c in BONES:
        if p == 0 and c != 1:
            continue  # metacarpals run inside the palm
        d, _ = tree.query((j[p] + j[c]) / 2)
        assert d < 0.02


def test_render_is_deterministic_and_consistent():
    cfg = HandSceneConfig(camera=SMALL_CAM)
    a, b = render_hand(5, cfg), render_hand(5, cfg)
    np.testing.assert_array_equal(a.frame.points, b.frame.points)
    np.testing.assert_array_equal(a.joints, b.joints)
    assert not np.array_equal(render_hand(6, cfg).joints, a.joints)
    fr = a.frame
    assert set(np.unique(fr.point_label)) <= set(range(len(HAND_LABELS)))
    hand = fr.points[fr.point_label == HAND_LABELS.index("hand")]
    assert len(hand) > 50
    # joints: in front of the camera, in the field of view, near the hand's surface
    assert (a.joints[:, 2] > 0.25).all()
    k = SMALL_CAM.intrinsics
    uv = (a.joints / a.joints[:, 2:]) @ k.T
    assert ((uv[:, 0] > -10) & (uv[:, 0] < SMALL_CAM.width + 10)).all()
    d, _ = cKDTree(hand).query(a.joints)
    assert np.median(d) < 0.02 and d.max() < 0.08
    # the joints are the hand frame's joints moved by hand_to_camera
    local = hand_joints(a.shape, a.pose)
    t = a.hand_to_camera
    np.testing.assert_allclose(local @ t[:3, :3].T + t[:3, 3], a.joints, atol=1e-5)


def test_scene_config_errors():
    with pytest.raises(InvalidInputError, match="distance"):
        HandSceneConfig(distance=(0.5, 0.2))
    with pytest.raises(InvalidInputError, match="camera"):
        HandSceneConfig(camera="kinect")
    with pytest.raises(InvalidInputError, match="config"):
        render_hand(0, config=3)
