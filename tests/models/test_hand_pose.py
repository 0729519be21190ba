"""The hand-pose pipeline and its structural losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch_geometric.data import Batch, Data

from geo3d.datasets import SyntheticHands
from geo3d.errors import InvalidInputError
from geo3d.models import create
from geo3d.models.hand_losses import (bone_length_loss, bone_lengths, bone_proportion_loss,
                                      inside_hand_loss, joint_angle_loss, project_into_hand,
                                      refine_bone_proportions, surface_violation,
                                      template_proportions, template_scale)
from geo3d.models.hand_pose import FOREARM_LABEL, HandPoseLossWeights, _principal_frame
from geo3d.sim.depth_camera import DepthCamera
from geo3d.sim.hand import HandPose, hand_joints, sample_pose, sample_shape
from geo3d.sim.hand_render import HAND_LABELS, HandSceneConfig

CFG = HandSceneConfig(camera=DepthCamera(width=64, height=48, fx=55.4, fy=55.4, max_depth=3.0))
TINY = dict(loc_points=64, num_points=48, max_neighbors=8)


@pytest.fixture(scope="module")
def frames():
    ds = SyntheticHands("train", 3, config=CFG, with_depth=False)
    return [ds[i] for i in range(3)]


def _model(name="hand_pose_small", **kw):
    torch.manual_seed(0)
    extra = TINY if name == "hand_pose" else {}
    return create(name, **{**extra, **kw})


def _gt_hands(n, seed=0):
    rng = np.random.default_rng(seed)
    return torch.tensor(np.stack([hand_joints(sample_shape(rng), sample_pose(rng)) for _ in range(n)]))


def test_sizes():
    small = sum(p.numel() for p in create("hand_pose_small").parameters())
    large = sum(p.numel() for p in create("hand_pose").parameters())
    assert small <= 100_000
    assert large >= 10 * small
    with pytest.raises(InvalidInputError, match="num_classes"):
        create("hand_pose", num_classes=3)
    with pytest.raises(InvalidInputError, match="depth"):
        create("hand_pose", depth=7)
    with pytest.raises(InvalidInputError, match="weights"):
        create("hand_pose", weights={"bone": 1})
    with pytest.raises(InvalidInputError, match="bone"):
        HandPoseLossWeights(bone=-1)


def test_forward_train_and_loss(frames):
    model = _model("hand_pose", width=4, depth=2).train()
    batch = Batch.from_data_list(frames[:2])
    out = model(batch)
    assert model.task == "hand_pose"
    assert out["joints"].shape == (2, 21, 3) and out["crop_index"].shape == (2, 48)
    # the crop is centred on the true hand while training with labels
    for b in range(2):
        hand = batch.pos[(batch.batch == b) & (batch.y == 1)].mean(0)
        assert (out["centre"][b] - hand).norm() < 0.06
    terms = model.loss_terms(out, batch)
    assert set(terms) == {"joints", "vote", "regression", "offsets", "segmentation", "bone",
                          "angle", "inside"}
    loss = model.loss(out, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    with pytest.raises(InvalidInputError, match="data.joints"):
        model.loss(out, Data(pos=batch.pos))


def test_camera_frame_round_trip(frames):
    model = _model("hand_pose", width=4, depth=2).eval()
    with torch.no_grad():
        out = model(frames[0])
    # the network's joints in the camera frame map to joints_local through the normalisation frame
    torch.testing.assert_close(model.to_local(out["joints_network"], out), out["joints_local"],
                               rtol=1e-4, atol=1e-4)
    axes = out["frame_axes"][0]
    torch.testing.assert_close(axes.T @ axes, torch.eye(3), atol=1e-5, rtol=0)
    assert torch.det(axes) > 0
    local = out["local_pos"][0] * model.norm_scale
    torch.testing.assert_close(local @ axes.T + out["frame_origin"][0], out["crop_pos"][0], atol=1e-5, rtol=0)


def test_output_blends_vote_and_regression_per_joint(frames):
    model = _model("hand_pose", width=4, depth=2).eval()
    with torch.no_grad():
        share = torch.sigmoid(model.blend_logit)
        assert share.shape == (21, 1) and torch.allclose(share, share[0]) and 0.05 < share[0] < 0.2
        out = model(frames[0])
        expected = out["vote"] + share * (out["regression"] - out["vote"])
        torch.testing.assert_close(out["joints_local"], expected, rtol=1e-5, atol=1e-6)
        model.blend_logit[:10] = -50.0  # voting only for the first 10 joints
        model.blend_logit[10:] = 50.0  # regression only for the rest
        out = model(frames[0])
    torch.testing.assert_close(out["joints_local"][:, :10], out["vote"][:, :10])
    torch.testing.assert_close(out["joints_local"][:, 10:], out["regression"][:, 10:])


def test_a_checkpoint_from_before_the_blend_loads_as_the_plain_average(frames):
    model = _model("hand_pose", width=4, depth=2).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "blend_logit"}
    old = _model("hand_pose", width=4, depth=2).eval()
    old.load_state_dict(state)  # strict: the missing blend is filled in
    assert torch.equal(old.blend_logit, torch.zeros(21, 1))
    with torch.no_grad():
        out = old(frames[0])
    torch.testing.assert_close(out["joints_local"], (out["vote"] + out["regression"]) / 2)
    with pytest.raises(RuntimeError, match="Missing key"):  # other keys are still checked
        old.load_state_dict({k: v for k, v in state.items() if k != "global_head.0.weight"})


def test_eval_is_per_sample_and_float64(frames):
    model = _model("hand_pose", width=4, depth=2).eval()
    with torch.no_grad():
        together = model(Batch.from_data_list(frames))["joints"]
        for i in (0, 2):
            alone = model(Batch.from_data_list([frames[i]]))["joints"]
            torch.testing.assert_close(alone[0], together[i], rtol=1e-4, atol=1e-4)
        plain = model(frames[0])["joints"]
    m64 = _model("hand_pose", width=4, depth=2).double().eval()
    m64.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    f64 = frames[0].clone()
    f64.pos = f64.pos.double()
    with torch.no_grad():
        out64 = m64(f64)["joints"]
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), plain, rtol=1e-3, atol=1e-3)


def test_principal_frame_matches_numpy():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(2, 200, 3, generator=g, dtype=torch.float64) * torch.tensor([0.05, 0.02, 0.005],
                                                                                  dtype=torch.float64)
    pts = pts + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    w = torch.rand(2, 200, generator=g, dtype=torch.float64)
    mean, axes = _principal_frame(pts, w)
    for b in range(2):
        p, ww = pts[b].numpy(), w[b].numpy() / w[b].numpy().sum()
        m = (ww[:, None] * p).sum(0)
        cov = (ww[:, None, None] * np.einsum("ni,nj->nij", p - m, p - m)).sum(0)
        _, vec = np.linalg.eigh(cov)
        np.testing.assert_allclose(mean[b].numpy(), m, atol=1e-12)
        for k, col in ((0, 2), (2, 0)):
            assert abs(abs(axes[b, :, k].numpy() @ vec[:, col]) - 1) < 1e-9
        assert axes[b, :, 2] @ mean[b] < 0  # smallest axis towards the camera (origin)
        assert torch.det(axes[b]) > 0


def test_principal_frame_forearm_axis():
    g = torch.Generator().manual_seed(1)
    # a flat hand around (0, 0, 0.5) facing the camera, long along y; the forearm towards -x
    hand = torch.randn(300, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [0.03, 0.05, 0.004], dtype=torch.float64) + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    arm = torch.randn(100, 3, generator=g, dtype=torch.float64) * 0.01 + torch.tensor(
        [-0.12, 0.0, 0.53], dtype=torch.float64)
    pts = torch.cat([hand, arm])[None]
    w_hand = torch.cat([torch.ones(300), torch.zeros(100)]).double()[None]
    w_arm = 1 - w_hand
    mean, axes = _principal_frame(pts, w_hand, w_arm)
    # first axis: arm -> hand within the hand's plane (+x), not the largest spread (y)
    torch.testing.assert_close(axes[0, :, 0], torch.tensor([1.0, 0, 0], dtype=torch.float64), atol=0.02, rtol=0)
    assert axes[0, 2, 2] < -0.99 and torch.det(axes[0]) > 0  # normal towards the camera
    torch.testing.assert_close(axes[0].T @ axes[0], torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    # too little forearm: the principal axis (y), as without w_arm
    _, plain = _principal_frame(pts, w_hand)
    _, fallback = _principal_frame(pts, w_hand, w_arm * 0.01)
    torch.testing.assert_close(fallback, plain)
    assert abs(plain[0, 1, 0]) > 0.99


def test_forearm_labels_train_the_localiser(frames):
    model = _model("hand_pose", width=4, depth=2).train()
    batch = Batch.from_data_list(frames[:2])
    assert (batch.label == 2).any()
    out = model(batch)
    assert out["forearm_logits"].shape == out["hand_logits"].shape
    with_arm = model.loss_terms(out, batch)["segmentation"]
    no_label = batch.clone()
    del no_label.label
    without = model.loss_terms(out, no_label)["segmentation"]
    assert with_arm > without  # the forearm BCE is added only when data.label is given
    short = batch.clone()
    short.label = batch.label[:-1]  # not one label per point: ignored, as if absent
    torch.testing.assert_close(model.loss_terms(out, short)["segmentation"], without)
    assert FOREARM_LABEL == HAND_LABELS.index("forearm")
    model.zero_grad()
    with_arm.backward(retain_graph=True)
    assert model.loc_head.weight.grad[1].abs().sum() > 0
    model.zero_grad()
    model.loss_terms(out, no_label)["segmentation"].backward()
    assert model.loc_head.weight.grad[1].abs().sum() == 0


def test_bone_length_loss():
    gt = _gt_hands(4)
    assert bone_length_loss(gt, gt) < 1e-12
    # rigid motion and scaling of the prediction: the ratio part stays zero
    r = torch.tensor(Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix())
    moved = gt @ r.T + 0.1
    assert bone_length_loss(moved, gt) < 1e-9
    scaled = gt * 1.2
    torch.testing.assert_close(bone_length_loss(scaled, gt, scale_weight=1.0),
                               torch.tensor(0.2, dtype=torch.float64))
    assert bone_length_loss(scaled, gt, scale_weight=0.0) < 1e-9
    # a stretched finger costs
    bad = gt.clone()
    bad[:, 8] += (bad[:, 8] - bad[:, 7])
    assert bone_length_loss(bad, gt, scale_weight=0.0) > 0.01
    with pytest.raises(InvalidInputError, match="pred"):
        bone_length_loss(gt[:, :20], gt)


def test_refinement_restores_bone_proportions_near_the_prediction():
    truth = _gt_hands(64, seed=3).float()
    noisy = truth + 0.004 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    p = template_proportions()
    assert p.shape == (20,) and torch.isclose(p.mean(), torch.tensor(1.0))
    with torch.inference_mode():  # as in a benchmark's latency run
        refined = refine_bone_proportions(noisy, p)
    assert bone_proportion_loss(refined, p).mean() < 0.3 * bone_proportion_loss(noisy, p).mean()
    bone_err = lambda j: (bone_lengths(j) - bone_lengths(truth)).abs().mean()  # noqa: E731
    assert bone_err(refined) < 0.7 * bone_err(noisy)
    assert (refined - noisy).norm(dim=-1).mean() < 0.006  # it stays near the prediction
    assert (refined - truth).norm(dim=-1).mean() <= (noisy - truth).norm(dim=-1).mean()
    assert refine_bone_proportions(noisy, p, steps=0) is noisy


def test_refinement_to_a_given_scale_sizes_a_shrunken_hand():
    truth = _gt_hands(64, seed=4).float()
    noisy = truth + 0.004 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
    centre = noisy.mean(1, keepdim=True)
    shrunk = centre + 0.8 * (noisy - centre)  # an unsure network's hand: too small
    p, true_scale = template_proportions(), bone_lengths(truth).mean(1)
    bone_err = lambda j: (bone_lengths(j) - bone_lengths(truth)).abs().mean()  # noqa: E731
    own = refine_bone_proportions(shrunk, p)  # keeps the prediction's size
    sized = refine_bone_proportions(shrunk, p, scale=true_scale)
    assert bone_err(sized) < 0.5 * bone_err(own)
    torch.testing.assert_close(bone_lengths(sized).mean(1), true_scale, rtol=0.03, atol=0)
    assert (sized - truth).norm(dim=-1).mean() < (shrunk - truth).norm(dim=-1).mean()
    # the template's scale: a plausible adult hand, the mean of the simulated ones within 10%
    assert abs(template_scale() / float(true_scale.mean()) - 1) < 0.1
    hands = truth[:2]
    for scale in (true_scale[:1], true_scale[:2] * 0, torch.full((2,), float("nan")), 0.04):
        with pytest.raises(InvalidInputError, match="scale"):
            refine_bone_proportions(hands, p, scale=scale)


def test_the_scale_head_learns_the_hand_size_and_sets_the_refined_size(frames):
    torch.manual_seed(0)
    model = _model("hand_pose", width=4, depth=2)
    batch = Batch.from_data_list(frames)
    true_scale = bone_lengths(batch.joints.view(-1, 21, 3)).mean(1)
    with torch.no_grad():
        start = model.eval()(batch)["hand_scale"]
    torch.testing.assert_close(start, torch.full_like(start, template_scale()), rtol=0.01, atol=0)
    head = [p for n, p in model.named_parameters() if n.startswith("scale_head")]
    opt = torch.optim.Adam(head, lr=1e-2)
    target = true_scale * 1.3  # learnable only through the bone term
    batch.joints = (batch.joints.view(-1, 21, 3) * 1.3).view(-1, 3)
    model.train()
    for _ in range(150):
        opt.zero_grad()
        model.loss(model(batch), batch).backward()
        opt.step()
    with torch.no_grad():
        learnt = model(batch)["hand_scale"]  # random crops: the batch's mean size
        torch.testing.assert_close(learnt.mean(), target.mean(), rtol=0.05, atol=0)
        out = model.eval()(batch)  # an untrained localiser: other crops, so another scale
    refined_scale = bone_lengths(out["joints"]).mean(1)
    torch.testing.assert_close(refined_scale, out["hand_scale"], rtol=0.05, atol=0)


def test_a_checkpoint_from_before_the_scale_head_uses_the_template_scale(frames):
    model = _model("hand_pose", width=4, depth=2).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("scale_head")}
    old = _model("hand_pose", width=4, depth=2).eval()
    with torch.no_grad():
        old.scale_head[-1].bias.fill_(0.5)
    old.load_state_dict(state)  # strict: the missing head is filled in
    with torch.no_grad():
        scale = old(frames[0])["hand_scale"]
    torch.testing.assert_close(scale, torch.full_like(scale, template_scale()))


def test_refinement_and_proportion_loss_refuse_bad_input():
    p, hands = template_proportions(), _gt_hands(2).float()
    assert refine_bone_proportions(hands[:0], p).shape == (0, 21, 3)  # no hands: nothing to do
    bad_joints = [hands[0], hands[:, :20], hands.clone().fill_(float("nan")), "joints"]
    for joints in bad_joints:
        with pytest.raises(InvalidInputError, match="joints"):
            refine_bone_proportions(joints, p)
    for props in (p[:19], p * float("inf"), -p, [1.0] * 20):
        with pytest.raises(InvalidInputError, match="proportions"):
            refine_bone_proportions(hands, props)
        with pytest.raises(InvalidInputError, match="proportions"):
            bone_proportion_loss(hands, props)
    for steps in (-1, 2.5, True):
        with pytest.raises(InvalidInputError, match="steps"):
            refine_bone_proportions(hands, p, steps)
    with pytest.raises(InvalidInputError, match="joints"):
        bone_proportion_loss(hands[:, :, :2], p)


def test_the_model_refines_only_in_eval_with_the_bone_term_on(frames):
    model = _model("hand_pose", width=4, depth=2)
    with torch.no_grad():
        out = model.train()(Batch.from_data_list(frames[:2]))
        assert out["joints"] is out["joints_network"]
        out = model.eval()(frames[0])
        assert not torch.equal(out["joints"], out["joints_network"])
        model.refine_steps, model.surface_projection = 0, False
        out = model(frames[0])
        assert torch.equal(out["joints"], out["joints_network"])
        model.refine_steps, model.surface_projection = 10, True
        model.weights = HandPoseLossWeights(bone=0.0, inside=0.0)
        out = model(frames[0])
        assert torch.equal(out["joints"], out["joints_network"])
    with pytest.raises(InvalidInputError, match="refine_steps"):
        create("hand_pose", refine_steps=-1)
    with pytest.raises(InvalidInputError, match="surface_projection"):
        create("hand_pose_small", surface_projection="yes")


def test_joint_angle_loss_zero_within_limits_positive_outside():
    gt = _gt_hands(300, seed=1)
    assert float(joint_angle_loss(gt)) == 0.0
    assert float(joint_angle_loss(gt.float())) == 0.0
    # hyperextend every PIP by 50 degrees beyond straight: a penalty of ~ (50-5 deg)^2
    shape = sample_shape(0)
    straight = np.zeros((4, 4))
    bad = straight.copy()
    bad[:, 2] = -50.0
    j = torch.tensor(np.stack([hand_joints(shape, HandPose(np.zeros(5), straight)),
                               hand_joints(shape, HandPose(np.zeros(5), bad))]))
    assert float(joint_angle_loss(j[:1])) == 0.0
    expected = math.radians(45) ** 2 / 2 * 1.0  # pip term: 4 fingers of 1 sample of 2 -> mean/2
    torch.testing.assert_close(joint_angle_loss(j), torch.tensor(expected, dtype=torch.float64),
                               rtol=0.05, atol=0)


def test_surface_violation_on_a_plane():
    # a square of points on the plane z = 0.5 seen from the origin
    u = torch.linspace(-0.05, 0.05, 41, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.full((41 * 41,), 0.5, dtype=torch.float64)], 1)
    w = torch.ones(1, pts.shape[0], dtype=torch.float64)
    joints = torch.tensor([[[0.0, 0.0, 0.52],   # 2 cm behind: inside
                            [0.0, 0.0, 0.47],   # 3 cm in front of the surface
                            [0.0, 0.0, 0.70],   # 20 cm behind: 10 cm beyond the thickness
                            [0.08, 0.0, 0.5]]], dtype=torch.float64)  # off the silhouette
    v = surface_violation(joints, pts[None], w, thickness=0.10)[0]
    assert v[0] == 0
    torch.testing.assert_close(v[1], torch.tensor(0.03, dtype=torch.float64), atol=2e-4, rtol=0)
    torch.testing.assert_close(v[2], torch.tensor(0.10, dtype=torch.float64), atol=2e-4, rtol=0)
    torch.testing.assert_close(v[3], torch.tensor(0.02, dtype=torch.float64), atol=1e-3, rtol=0)
    # masked-out points do not count; no hand points: no violation
    assert surface_violation(joints, pts[None], torch.zeros_like(w)).abs().sum() == 0
    loss = inside_hand_loss(joints, pts[None], w)
    torch.testing.assert_close(loss, (v * 100).pow(2).mean())


def _plane(z=0.5, n=41, half=0.05):
    """Points on a square of the plane ``z`` seen from the origin, ``[1, n * n, 3]``."""
    u = torch.linspace(-half, half, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    zz = torch.full_like(xx, z)
    return torch.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], 1)[None]


def test_projection_moves_joints_in_front_of_the_surface_under_the_nearest_point():
    pts = _plane()  # 2.5 mm spacing
    w = torch.ones(pts.shape[:2], dtype=torch.float64)
    joints = torch.tensor([[[0.011, 0.002, 0.46],    # 4 cm in front: moves
                            [0.0, 0.0, 0.52],        # behind the surface: stays
                            [0.0, 0.0, 0.75],        # too deep, but not in front: stays
                            [0.09, 0.0, 0.5]]], dtype=torch.float64)  # off the silhouette: stays
    out = project_into_hand(joints, pts, w, margin=0.005)
    assert torch.equal(out[0, 1:], joints[0, 1:])
    nearest = torch.tensor([0.0100, 0.0025, 0.5], dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], nearest * (1 + 0.005 / nearest.norm()))
    assert surface_violation(out[:, :1], pts, w)[0, 0] == 0
    torch.testing.assert_close(project_into_hand(joints, pts, w, margin=0.0)[0, 0], nearest)
    # a point with weight 0 does not count, though it is the nearest
    decoy = torch.cat([pts, torch.tensor([[[0.011, 0.002, 0.465]]], dtype=torch.float64)], 1)
    w2 = torch.cat([w, torch.zeros(1, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(project_into_hand(joints, decoy, w2, margin=0.0)[0, 0], nearest)
    w2[0, -1] = 1
    torch.testing.assert_close(project_into_hand(joints, decoy, w2, margin=0.0)[0, 0], decoy[0, -1])
    # no hand points, or no points at all: nothing moves; float32 in, float32 out
    assert torch.equal(project_into_hand(joints, pts, torch.zeros_like(w)), joints)
    empty = pts[:, :0]
    assert torch.equal(project_into_hand(joints, empty, w[:, :0]), joints)
    assert surface_violation(joints, empty, w[:, :0]).abs().sum() == 0
    assert project_into_hand(joints.float(), pts.float(), w.float()).dtype == torch.float32
    assert torch.equal(project_into_hand(joints, pts, w > 0), project_into_hand(joints, pts, w))


def test_projection_leaves_true_joints_and_refuses_bad_input(frames):
    for d in frames:
        hand = d.pos[d.y == 1][None].double()
        j = d.joints[None].double()
        out = project_into_hand(j, hand, torch.ones(hand.shape[:2], dtype=torch.float64))
        assert (out - j).norm(dim=-1).gt(0).double().mean() <= 1 / 21
    pts, j = _plane(), torch.zeros(1, 21, 3, dtype=torch.float64)
    w = torch.ones(pts.shape[:2], dtype=torch.float64)
    bad = [((j[0], pts, w), "joints"), ((j, pts[0], w), "points"), ((j, pts, w[0]), "weight"),
           ((j.long(), pts, w), "joints"), ((j, pts, w[:, :5]), r"weight \[B, M\]"),
           ((j.expand(2, -1, -1), pts, w), "joints"), ((j * math.nan, pts, w), "NaN"),
           ((j, pts * math.inf, w), "points holds")]
    for args, match in bad:
        with pytest.raises(InvalidInputError, match=match):
            project_into_hand(*args)
    for margin in (-0.01, math.nan, "5mm", True):
        with pytest.raises(InvalidInputError, match="margin"):
            project_into_hand(j, pts, w, margin=margin)


def test_the_model_projects_joints_in_front_of_its_crop_only_with_the_inside_term(frames):
    model = _model("hand_pose", width=4, depth=2).eval()
    pts = _plane().float()
    prob = torch.ones(pts.shape[:2])
    prob[0, :100] = 0.3  # not hand points
    joints = torch.full((1, 21, 3), 0.005) + torch.tensor([0.0, 0.0, 0.44])
    joints[0, 1:, 2] = 0.53  # only the first joint is in front of the plane
    scale = torch.tensor([template_scale()])
    model.refine_steps = 0
    out = model.refine(joints, scale, pts, prob)
    assert torch.equal(out[0, 1:], joints[0, 1:])
    assert float(out[0, 0, 2]) > 0.5 and surface_violation(out, pts, prob > 0.5).max() < 0.01
    model.surface_projection = False
    assert torch.equal(model.refine(joints, scale, pts, prob), joints)
    model.surface_projection = True
    model.weights = HandPoseLossWeights(inside=0.0)
    assert torch.equal(model.refine(joints, scale, pts, prob), joints)


def test_inside_loss_zero_for_true_joints(frames):
    d = frames[0]
    hand = d.pos[d.y == 1][None].double()
    v = surface_violation(d.joints[None].double(), hand, torch.ones(hand.shape[:2], dtype=torch.float64))
    assert (v > 0.005).double().mean() < 0.1
