"""Hand-pose metrics against direct numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from geo3d.errors import InvalidInputError
from geo3d.sim.hand import BONES, JOINTS
from geo3d.tasks.metrics.hand_pose import (HandPoseEvaluator, bone_length_errors, joint_errors,
                                           outside_hand, success_rate)


def _hands(n, seed):
    g = np.random.default_rng(seed)
    return g.normal(0, 0.05, (n, 21, 3)) + [0, 0, 0.5]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_joint_and_bone_errors(dtype):
    p, t = _hands(3, 0), _hands(3, 1)
    e = joint_errors(torch.tensor(p, dtype=dtype), torch.tensor(t, dtype=dtype))
    ref = np.sqrt(((p - t) ** 2).sum(-1)) * 1000
    np.testing.assert_allclose(e.numpy(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12)
    b = bone_length_errors(torch.tensor(p, dtype=dtype), torch.tensor(t, dtype=dtype))
    ref_b = np.array([[abs(np.linalg.norm(p[i, c] - p[i, q]) - np.linalg.norm(t[i, c] - t[i, q])) * 1000
                       for q, c in BONES] for i in range(3)])
    np.testing.assert_allclose(b.numpy(), ref_b, rtol=1e-4, atol=1e-3)
    with pytest.raises(InvalidInputError, match="pred"):
        joint_errors(torch.zeros(2, 20, 3), torch.zeros(2, 20, 3))
    with pytest.raises(InvalidInputError, match="NaN"):
        joint_errors(torch.full((1, 21, 3), float("nan")), torch.zeros(1, 21, 3))


def test_success_rate_counts_frames_by_their_worst_joint():
    err = torch.zeros(4, 21, dtype=torch.float64)
    err[0, 3] = 12.0
    err[1, :] = 4.0
    err[2, 20] = 30.0
    err[3, 0] = 80.0
    rate = success_rate(err, [0, 5, 12, 29.9, 30, 100])
    worst = [12, 4, 30, 80]
    ref = [np.mean([w <= t for w in worst]) for t in [0, 5, 12, 29.9, 30, 100]]
    np.testing.assert_allclose(rate.numpy(), ref)


def test_outside_hand_on_a_plane():
    u = torch.linspace(-0.05, 0.05, 21)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.full((441,), 0.5)], 1)
    joints = torch.tensor([[0.0, 0.0, 0.51], [0.0, 0.0, 0.45], [0.2, 0.0, 0.5]])
    assert outside_hand(joints, pts).tolist() == [False, True, True]
    with pytest.raises(InvalidInputError, match="points"):
        outside_hand(joints, pts[:0])


def test_evaluator_update_merge_compute():
    p, t = _hands(5, 2), _hands(5, 3)
    pos = torch.tensor(t.reshape(-1, 3), dtype=torch.float32)  # the hand points: the true joints
    frames = [Data(pos=pos[21 * i: 21 * (i + 1)], y=torch.ones(21, dtype=torch.long),
                   joints=torch.tensor(t[i], dtype=torch.float32)) for i in range(5)]
    pred = torch.tensor(p, dtype=torch.float32)
    one = HandPoseEvaluator()
    one.update({"joints": pred}, Batch.from_data_list(frames))
    a, b = HandPoseEvaluator(), HandPoseEvaluator()
    a.update({"joints": pred[:2]}, Batch.from_data_list(frames[:2]))
    b.update({"joints": pred[2:]}, Batch.from_data_list(frames[2:]))
    a.merge(b)
    r1, r2 = one.compute(), a.compute()
    assert r1 == r2
    ref = np.sqrt(((p - t) ** 2).sum(-1)) * 1000
    assert abs(r1["mean_error_mm"] - ref.mean()) < 1e-2
    assert list(r1["per_joint_mm"]) == list(JOINTS)
    assert abs(r1["per_joint_mm"]["thumb_tip"] - ref[:, 4].mean()) < 1e-2
    assert r1["num_frames"] == 5 and 0 <= r1["outside_fraction"] <= 1
    assert r1["success_rate"]["0mm"] == 0.0
    assert HandPoseEvaluator.key_metric in r1 and HandPoseEvaluator.higher_is_better is False
    # predicting the truth: no error, nothing outside
    perfect = HandPoseEvaluator()
    perfect.update({"joints": torch.tensor(t, dtype=torch.float32)}, Batch.from_data_list(frames))
    r = perfect.compute()
    assert r["mean_error_mm"] < 1e-3 and r["outside_fraction"] == 0.0
    assert r["success_rate"]["5mm"] == 1.0
    with pytest.raises(InvalidInputError, match="no frames"):
        HandPoseEvaluator().compute()
    with pytest.raises(InvalidInputError, match="batch.joints"):
        HandPoseEvaluator().update({"joints": pred}, Data(pos=pos))


def test_evaluator_reports_the_network_joints_before_a_refinement():
    p, t, q = _hands(4, 4), _hands(4, 5), _hands(4, 6)
    frames = [Data(pos=torch.tensor(t[i], dtype=torch.float32), y=torch.ones(21, dtype=torch.long),
                   joints=torch.tensor(t[i], dtype=torch.float32)) for i in range(4)]
    refined, network = torch.tensor(p, dtype=torch.float32), torch.tensor(q, dtype=torch.float32)
    both = HandPoseEvaluator()
    both.update({"joints": refined[:1], "joints_network": network[:1]}, Batch.from_data_list(frames[:1]))
    rest = HandPoseEvaluator()
    rest.update({"joints": refined[1:], "joints_network": network[1:]}, Batch.from_data_list(frames[1:]))
    both.merge(rest)
    r = both.compute()
    alone = HandPoseEvaluator()
    alone.update({"joints": network}, Batch.from_data_list(frames))
    ref = alone.compute()
    assert r["network"] == {k: ref[k] for k in ("mean_error_mm", "median_error_mm",
                                                "bone_length_error_mm", "outside_fraction")}
    assert r["mean_error_mm"] != r["network"]["mean_error_mm"]
    same = HandPoseEvaluator()  # no refinement: the model hands back the same tensor
    same.update({"joints": refined, "joints_network": refined}, Batch.from_data_list(frames))
    assert "network" not in same.compute()
    with pytest.raises(InvalidInputError, match="joints_network"):
        same.update({"joints": refined, "joints_network": network[:, :20]}, Batch.from_data_list(frames))
