"""Hand-pose metrics: mean joint error, success rate over thresholds, per-joint errors,
bone-length error and the fraction of joints outside the observed hand.

Plain torch; the success-rate curve is the one of Oberweger et al., "Hands Deep in Deep
Learning for Hand Pose Estimation", CVWW 2015 (fraction of frames whose largest joint
error is below ``t``). Errors are in millimetres for joints in metres.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from geo3d.errors import InvalidInputError
from geo3d.models.hand_losses import bone_lengths, surface_violation
from geo3d.sim.hand import JOINTS

__all__ = ["joint_errors", "success_rate", "bone_length_errors", "outside_hand",
           "HandPoseEvaluator", "DEFAULT_THRESHOLDS_MM"]

DEFAULT_THRESHOLDS_MM: tuple[float, ...] = tuple(float(t) for t in range(0, 81, 5))
"""Thresholds (mm) of the success-rate curve."""


def _joints(t: object, name: str) -> Tensor:
    if not isinstance(t, Tensor) or t.dim() != 3 or t.shape[1:] != (21, 3):
        raise InvalidInputError(f"{name} must be a tensor [B, 21, 3], got "
                                f"{list(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    if not torch.isfinite(t).all():
        raise InvalidInputError(f"{name} contains NaN or Inf values")
    return t


def joint_errors(pred: Tensor, target: Tensor) -> Tensor:
    """Euclidean error per joint in mm, ``[B, 21, 3]`` metres x2 -> ``[B, 21]`` float64."""
    pred, target = _joints(pred, "pred"), _joints(target, "target")
    if pred.shape != target.shape:
        raise InvalidInputError(f"pred {list(pred.shape)} and target {list(target.shape)} differ")
    return (pred.double() - target.double()).norm(dim=-1) * 1000.0


def success_rate(errors_mm: Tensor, thresholds: Sequence[float] = DEFAULT_THRESHOLDS_MM) -> Tensor:
    """Fraction of frames whose largest joint error is ``<= t``, per threshold.

    Shapes:
        ``errors_mm [B, 21], len(thresholds) = T -> [T]`` float64.
    """
    if errors_mm.dim() != 2 or errors_mm.shape[0] == 0:
        raise InvalidInputError(f"errors_mm must be [B, J] with B >= 1, got {list(errors_mm.shape)}")
    worst = errors_mm.max(dim=1).values
    t = torch.as_tensor(list(thresholds), dtype=torch.float64)
    return (worst[None, :] <= t[:, None]).double().mean(dim=1)


def bone_length_errors(pred: Tensor, target: Tensor) -> Tensor:
    """Absolute bone-length error in mm, ``[B, 20]`` float64."""
    pred, target = _joints(pred, "pred"), _joints(target, "target")
    return (bone_lengths(pred.double()) - bone_lengths(target.double())).abs() * 1000.0


def outside_hand(joints: Tensor, points: Tensor, tolerance: float = 0.005) -> Tensor:
    """Which joints lie outside the observed hand points (camera frame, metres).

    A joint is outside when :func:`geo3d.models.hand_losses.surface_violation` (off the
    silhouette by > 1 cm, in front of the surface, or > 10 cm behind it) exceeds
    ``tolerance`` metres (default 5 mm).

    Args:
        joints: ``[J, 3]`` one hand's joints.
        points: ``[P, 3]`` that frame's hand points (``P >= 1``).

    Returns:
        ``[J]`` bool.
    """
    if points.dim() != 2 or points.shape[-1] != 3 or points.shape[0] == 0:
        raise InvalidInputError(f"points must be [P, 3] with P >= 1, got {list(points.shape)}")
    v = surface_violation(joints[None].double(), points[None].double(),
                          torch.ones(1, points.shape[0], dtype=torch.float64))
    return v[0] > tolerance


class HandPoseEvaluator:
    """Accumulates hand-pose metrics over batches (the ``make_evaluator`` protocol).

    ``update(outputs, batch)`` takes ``outputs["joints"]`` ``[B, 21, 3]`` and the batch's
    ``joints`` (``[B * 21, 3]``); with per-point ``pos`` and ``y`` (1 = hand) it also counts
    joints outside the hand. ``compute()`` returns ``mean_error_mm``, ``median_error_mm``,
    ``per_joint_mm`` {joint name: mm}, ``success_rate`` {"<t>mm": fraction},
    ``bone_length_error_mm``, ``outside_fraction`` (NaN without hand points) and
    ``num_frames``. When ``outputs`` also hold ``joints_network`` (the network's joints
    before ``hand_pose``'s eval refinement, another tensor than ``joints``), it adds
    ``network``: the same mean, median, bone-length and outside figures for those.

    Args:
        thresholds: success-rate thresholds in mm (default 0, 5, ..., 80).
    """

    key_metric = "mean_error_mm"
    higher_is_better = False

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS_MM) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        self.errors: list[Tensor] = []
        self.bones: list[Tensor] = []
        self.outside: list[Tensor] = []
        self.network: Optional["HandPoseEvaluator"] = None  # joints before a refinement

    def update(self, outputs: dict, batch: object) -> None:
        net = outputs.get("joints_network")
        if isinstance(net, Tensor) and net is not outputs["joints"]:
            if net.shape != outputs["joints"].shape:
                raise InvalidInputError(f"outputs joints_network {list(net.shape)} and joints "
                                        f"{list(outputs['joints'].shape)} differ")
            self._network().update({"joints": net}, batch)
        pred = outputs["joints"].detach().cpu()
        gt = getattr(batch, "joints", None)
        if not isinstance(gt, Tensor) or gt.numel() != pred.numel():
            raise InvalidInputError(f"batch.joints must hold [21, 3] per sample to match the "
                                    f"prediction {list(pred.shape)}")
        gt = gt.detach().cpu().reshape(pred.shape).to(pred.dtype)
        self.errors.append(joint_errors(pred, gt))
        self.bones.append(bone_length_errors(pred, gt))
        pos, y = getattr(batch, "pos", None), getattr(batch, "y", None)
        if isinstance(pos, Tensor) and isinstance(y, Tensor) and y.shape[:1] == pos.shape[:1]:
            b = getattr(batch, "batch", None)
            b = torch.zeros(pos.shape[0], dtype=torch.long) if b is None else b.cpu()
            pos, y = pos.detach().cpu(), y.cpu()
            for i in range(pred.shape[0]):
                hand = pos[(b == i) & (y == 1)]
                if hand.shape[0]:
                    self.outside.append(outside_hand(pred[i], hand))

    def merge(self, other: "HandPoseEvaluator") -> None:
        """Add another evaluator's frames (e.g. another rank's)."""
        self.errors += other.errors
        self.bones += other.bones
        self.outside += other.outside
        if other.network is not None:
            self._network().merge(other.network)

    def _network(self) -> "HandPoseEvaluator":
        if self.network is None:
            self.network = HandPoseEvaluator(self.thresholds)
        return self.network

    def compute(self) -> dict:
        if not self.errors:
            raise InvalidInputError("no frames were evaluated")
        err = torch.cat(self.errors)
        rate = success_rate(err, self.thresholds)
        outside = torch.stack(self.outside).double().mean() if self.outside else torch.tensor(float("nan"))
        out = {"mean_error_mm": float(err.mean()),
               "median_error_mm": float(err.median()),
               "per_joint_mm": {n: float(v) for n, v in zip(JOINTS, err.mean(0))},
               "success_rate": {f"{t:g}mm": float(r) for t, r in zip(self.thresholds, rate)},
               "bone_length_error_mm": float(torch.cat(self.bones).mean()),
               "outside_fraction": float(outside),
               "num_frames": int(err.shape[0])}
        if self.network is not None:
            net = self.network.compute()
            out["network"] = {k: net[k] for k in ("mean_error_mm", "median_error_mm",
                                                  "bone_length_error_mm", "outside_fraction")}
        return out

