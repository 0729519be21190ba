"""3D hand pose from a full depth frame: localise, crop, normalise (a box from the forearm
to the hand), PointNet++, per-point offset voting plus regression, joints back in camera
coordinates.

The stages are ours, built on geo3d's PointNet++ (:mod:`geo3d.models.backbones.pointnet2`,
PyG message passing, fpsample FPS, scipy neighbour search) and ``torch.linalg.eigh``:

1. **Localise** without a given hand centre: a light PointNet++ segments a fixed-size,
   evenly strided subsample of each frame into hand and forearm; the centre starts at the
   subsample point with the most hand probability within ``crop_radius / 2`` and is
   refined by three mean-shift steps (probability-weighted, same ball). Published pipelines (Ge et al., "Hand PointNet", CVPR 2018;
   Moon et al., "V2V-PoseNet", CVPR 2018) assume a given centre.
2. **Crop** the frame's points within ``crop_radius`` of the centre, ``num_points`` of them
   (random in training, evenly strided in eval). While training with ``data.y`` the crop
   is centred on the true hand (plus 1 cm jitter) so the pose net sees hands from step 1.
3. **Normalise** in the oriented bounding box of the hand points of the crop (weights: the
   localiser's probabilities interpolated to the crop): origin at their weighted mean, the
   normal their smallest principal axis, turned towards the camera; the first axis points
   from the forearm to the hand (the forearm's probability-weighted mean in the crop to the
   hand's, in the hand's plane), or, with less than 4 points' worth of forearm in the crop,
   along the largest principal axis with positive skewness; right-handed; unit
   ``norm_scale`` metres, so bone lengths keep their size. The forearm axis is anatomical,
   so the hand's pose in this box varies far less than in the plain principal box: on
   ``SyntheticHands`` the mean pose misses the test joints by 29 mm against 51 mm.
4. **Backbone**: PointNet++ segmentation (set abstraction + feature propagation); inputs
   the local coordinates and the hand and forearm probabilities.
5. **Joint head**: per point, 21 offsets and 21 weights; each joint is the softmax-weighted
   mean of ``point + offset`` (Ge et al., "Point-to-Point Regression PointNet", ECCV 2018),
   blended per joint with a global regression from the max-pooled features by a learned
   weight (``sigmoid(blend_logit)``, starting at 12% regression). Voting is the better
   estimate: on a model trained 30 min with the plain average, voting alone scored 13.2 mm
   against 14.5 for the average and 19.7 for regression alone.
6. Joints are mapped back to the camera frame.
7. **Hand scale**: a head on the same pooled features predicts the hand's mean bone length
   (``hand_scale``, metres, ``template_scale * exp(head)``), trained in the ``bone`` term.
   The joints' own size is a poor estimate: a network unsure of a pose shrinks the hand
   towards its mean pose (a small model trained 3.5 min: 35 mm mean bone against 42 true,
   uncorrelated with the truth).
8. **Bone-proportion refinement** (eval only, when the ``bone`` loss term is on):
   ``refine_steps`` iterations of constraint projection give the bones the template
   hand's proportions at the predicted ``hand_scale``, moving joints as little as they can
   (:func:`geo3d.models.hand_losses.refine_bone_proportions`; ``joints_network`` keeps the
   unrefined ones).
9. **Surface projection** (eval only, when the ``inside`` loss term is on): joints in front
   of the crop's hand points (localiser probability > 0.5) move onto the nearest of them,
   5 mm under the skin (:func:`geo3d.models.hand_losses.project_into_hand`); then the bone
   refinement and the projection once more.

The losses (:meth:`HandPoseNet.loss`) are documented terms with the weights of
:class:`HandPoseLossWeights`; the structural ones are in :mod:`geo3d.models.hand_losses`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import global_max_pool

from geo3d.errors import InvalidInputError
from geo3d.models._layers import check_int, check_model_input, mlp
from geo3d.models.backbones.pointnet2 import PointNet2, knn_interpolate
from geo3d.models.hand_losses import (bone_length_loss, bone_lengths, inside_hand_loss,
                                     joint_angle_loss, project_into_hand,
                                     refine_bone_proportions, template_proportions,
                                     template_scale)
from geo3d.models.registry import register

__all__ = ["HandPoseLossWeights", "HandPoseNet", "hand_pose", "hand_pose_small"]

NUM_JOINTS = 21
#: ``data.label`` of forearm points: ``geo3d.sim.hand_render.HAND_LABELS.index("forearm")``
#: (not imported: that module pulls in the ray-casting simulator)
FOREARM_LABEL = 2


@dataclass(frozen=True)
class HandPoseLossWeights:
    """Weights of the terms of :meth:`HandPoseNet.loss` (0 switches a term off).

    The structural weights are scaled to their gradients: on the joints of a trained
    ``hand_pose``, a unit weight of ``angle`` pulls ~40x harder than the joint terms
    together, ``bone`` ~7x and ``inside`` ~20x. The defaults give each a fortieth to a
    twentieth of the joint terms' pull; the eval-time refinement and projection do most of
    the structural work. Weights 4x these (the defaults until 2026-12-08) cost mean error:
    at equal training (``benchmarks/hand_pose.py --epochs 5 2``) the small model scored
    37.2 mm against 35.8 with these and 35.7 without structural terms, the large one 33.6
    against 31.6 (31.9 without), with the same bone-length and outside-the-hand gains; 31
    epochs (about 60 min) of the full model reached 9.6 mm mean joint error, 8.7 with these. The
    first defaults (1, 1, 0.05) reached 28.0 mm in 30 minutes.

    Args:
        joints: smooth-L1 of the final joints in the normalised frame (default 1).
        vote: the same for the offset-voting estimate (default 0.5).
        regression: the same for the global regression (default 0.5).
        offsets: smooth-L1 of per-point offsets to the joints within 2 units (default 0.5).
        segmentation: binary cross-entropy of the localiser against ``data.y`` (default 1).
        bone: :func:`~geo3d.models.hand_losses.bone_length_loss` of the joints, plus the
            scale head's smooth-L1 (beta 0.2) of ``log(hand_scale / true mean bone length)``
            (default 0.005; Adam sizes the head's own steps whatever the weight).
        angle: :func:`~geo3d.models.hand_losses.joint_angle_loss` (default 0.00125).
        inside: :func:`~geo3d.models.hand_losses.inside_hand_loss` (default 0.00125).
    """

    joints: float = 1.0
    vote: float = 0.5
    regression: float = 0.5
    offsets: float = 0.5
    segmentation: float = 1.0
    bone: float = 0.005
    angle: float = 0.00125
    inside: float = 0.00125

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"loss weight {name} must be a finite number >= 0, "
                                        f"got {value!r}")


def _strided(batch: Tensor, count: int, num_graphs: int, offset: Optional[Tensor]) -> Tensor:
    """``count`` evenly spaced indices per graph (repeats when it has fewer points)."""
    sizes = torch.bincount(batch, minlength=num_graphs)
    if (sizes == 0).any():
        raise InvalidInputError("data.batch has an empty sample: every frame needs points")
    start = torch.cumsum(sizes, 0) - sizes
    off = torch.full((num_graphs, 1), 0.5, device=batch.device) if offset is None else offset
    steps = (torch.arange(count, device=batch.device)[None] + off) * sizes[:, None] / count
    return (start[:, None] + steps.long().clamp_max(sizes[:, None] - 1)).reshape(-1)


def _principal_frame(pts: Tensor, w: Tensor, w_arm: Optional[Tensor] = None,
                     min_arm: float = 4.0) -> tuple[Tensor, Tensor]:
    """Weighted mean ``[B, 3]`` and right-handed axes ``[B, 3, 3]`` (columns) of the hand.

    The third axis is the smallest principal axis, towards the camera. The first is the
    direction from the ``w_arm``-weighted mean to the hand's mean within the hand's plane
    where ``w_arm`` sums to ``min_arm`` or more, else the largest principal axis with
    positive skewness.
    """
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    mean = (w[..., None] * pts).sum(1)
    c = pts - mean[:, None]
    cov = torch.einsum("bm,bmi,bmj->bij", w, c, c).double()
    cov = cov + torch.eye(3, dtype=cov.dtype, device=cov.device) * 1e-12
    _, vec = torch.linalg.eigh(cov)  # ascending eigenvalues
    vec = vec.to(pts.dtype)
    e1, e3 = vec[..., 2], vec[..., 0]
    e3 = torch.where(((e3 * mean).sum(-1, keepdim=True) > 0), -e3, e3)  # towards the camera
    skew = (w * ((c * e1[:, None]).sum(-1)) ** 3).sum(1, keepdim=True)
    e1 = torch.where(skew < 0, -e1, e1)
    if w_arm is not None:
        arm_mass = w_arm.sum(1, keepdim=True)
        arm = (w_arm[..., None] * pts).sum(1) / arm_mass.clamp_min(1e-12)
        along = mean - arm
        along = along - (along * e3).sum(-1, keepdim=True) * e3
        length = along.norm(dim=-1, keepdim=True)
        use = (arm_mass >= min_arm) & (length > 1e-6)
        e1 = torch.where(use, along / length.clamp_min(1e-12), e1)
    e2 = torch.cross(e3, e1, dim=-1)
    return mean, torch.stack([e1, e2, e3], dim=-1)


class HandPoseNet(nn.Module):
    """Depth frame -> 21 hand joints in camera coordinates (see the module docstring).

    Args:
        localizer: PointNet++ segmentation backbone on the frame subsample.
        backbone: PointNet++ segmentation backbone on the normalised crop (input features:
            the hand and forearm probabilities, then ``data.x``).
        feature_channels: per-point width of ``backbone``'s output.
        in_channels: width of ``data.x`` (0: positions only).
        loc_points: frame points the localiser sees per sample.
        num_points: crop points per sample.
        crop_radius: crop ball radius, metres.
        norm_scale: metres per unit of the normalised frame.
        head_hidden: hidden width of the joint heads.
        weights: loss weights.
        refine_steps: steps of the eval-time bone-proportion refinement (0: off; it also
            stays off when ``weights.bone`` is 0).
        surface_projection: the eval-time projection of joints in front of the observed
            hand onto it (stays off when ``weights.inside`` is 0).

    Shapes:
        ``data.pos [N, 3]`` (camera frame, metres), ``data.batch [N]`` -> a dict with
        ``joints [B, 21, 3]`` (camera frame), ``joints_local``, ``vote``, ``regression``
        ``[B, 21, 3]`` (normalised frame), ``hand_logits`` and ``forearm_logits [B * loc_points]``,
        ``loc_index [B * loc_points]``, ``centre [B, 3]``, ``crop_index [B, num_points]``,
        ``crop_pos [B, num_points, 3]`` (camera frame), ``crop_prob`` and ``crop_forearm_prob``
        ``[B, num_points]``,
        ``local_pos [B, num_points, 3]``, ``offsets [B, num_points, 21, 3]``,
        ``frame_origin [B, 3]`` and ``frame_axes [B, 3, 3]``, ``joints_network [B, 21, 3]``
        (camera frame, before the refinement; equal to ``joints`` in training) and
        ``hand_scale [B]`` (the predicted mean bone length, metres).
    """

    task = "hand_pose"

    def __init__(self, localizer: PointNet2, loc_channels: int, backbone: PointNet2,
                 feature_channels: int, in_channels: int = 0, loc_points: int = 512,
                 num_points: int = 512, crop_radius: float = 0.15, norm_scale: float = 0.1,
                 head_hidden: int = 64, weights: HandPoseLossWeights = HandPoseLossWeights(),
                 refine_steps: int = 10, surface_projection: bool = True) -> None:
        super().__init__()
        self.refine_steps, self.surface_projection = refine_steps, surface_projection
        self.register_buffer("bone_proportions", template_proportions(), persistent=False)
        self.in_channels = in_channels
        self.loc_points, self.num_points = loc_points, num_points
        self.crop_radius, self.norm_scale = crop_radius, norm_scale
        self.weights = weights
        self.localizer = localizer
        self.loc_head = nn.Linear(loc_channels, 2)  # hand, forearm
        self.backbone = backbone
        self.point_head = mlp([feature_channels, head_hidden, NUM_JOINTS * 4], plain_last=True)
        # no BatchNorm on pooled per-hand features: a training batch of one hand must work
        self.global_head = mlp([feature_channels, head_hidden, NUM_JOINTS * 3], norm=False,
                               plain_last=True)
        # per joint, the regression's share of the output is sigmoid(blend_logit)
        self.blend_logit = nn.Parameter(torch.full((NUM_JOINTS, 1), -2.0))
        # the hand's mean bone length, template_scale * exp(output), starting near the template
        self.scale_head = mlp([feature_channels, head_hidden, 1], norm=False, plain_last=True)
        with torch.no_grad():
            self.scale_head[-1].weight.mul_(0.01)
            self.scale_head[-1].bias.zero_()
        self.register_buffer("template_scale", torch.tensor(template_scale()), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if any(k.startswith(prefix) for k in state_dict):
            # checkpoints from before the learned blend averaged voting and regression
            state_dict.setdefault(prefix + "blend_logit", torch.zeros_like(self.blend_logit))
            # and from before the scale head: the template's scale
            for name, value in self.scale_head.state_dict().items():
                state_dict.setdefault(f"{prefix}scale_head.{name}", torch.zeros_like(value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ stages
    def localize(self, pos: Tensor, x: Optional[Tensor], batch: Tensor, num_graphs: int):
        """Stage 1: ``(loc_index, logits [B * loc_points, 2] (hand, forearm), centre [B, 3])``."""
        off = torch.rand(num_graphs, 1, device=pos.device) if self.training else None
        idx = _strided(batch, self.loc_points, num_graphs, off)
        feats, _ = self.localizer(pos[idx], None if x is None else x[idx], batch[idx], num_graphs)
        logits = self.loc_head(feats)
        p = torch.sigmoid(logits[:, 0].detach()).view(num_graphs, -1)
        pts = pos[idx].detach().view(num_graphs, -1, 3)
        # start at the densest hand-probability mass, then mean shift (ball kernel)
        ball = (torch.cdist(pts, pts) < self.crop_radius / 2).to(p.dtype)
        mass = (ball * p[:, None, :]).sum(-1)
        centre = pts[torch.arange(num_graphs, device=pos.device), mass.argmax(1)]
        for _ in range(3):
            near = ((pts - centre[:, None]).norm(dim=-1) < self.crop_radius / 2).to(p.dtype)
            wk = p * near + 1e-12
            centre = (wk[..., None] * pts).sum(1) / wk.sum(1, keepdim=True)
        return idx, logits, centre

    def training_centre(self, centre: Tensor, pos: Tensor, y: Tensor, batch: Tensor,
                        num_graphs: int) -> Tensor:
        """The crop centre while training: the true hand's mean (``y == 1``) plus 1 cm
        jitter, or ``centre`` for frames without hand points."""
        hand = (y == 1).to(pos.dtype)
        count = torch.zeros(num_graphs, dtype=pos.dtype, device=pos.device).index_add_(0, batch, hand)
        true_c = torch.zeros(num_graphs, 3, dtype=pos.dtype, device=pos.device).index_add_(
            0, batch, pos.detach() * hand[:, None]) / count.clamp_min(1)[:, None]
        jitter = torch.randn_like(true_c) * 0.01
        return torch.where(count[:, None] > 0, true_c + jitter, centre)

    def crop(self, pos: Tensor, batch: Tensor, centre: Tensor) -> Tensor:
        """Stage 2: ``[B, num_points]`` indices into ``pos`` near each centre."""
        num_graphs = centre.shape[0]
        dist = (pos.detach() - centre[batch]).norm(dim=-1)
        inside_all = (dist < self.crop_radius).nonzero().squeeze(1)
        counts = torch.bincount(batch[inside_all], minlength=num_graphs).tolist()
        starts = torch.bincount(batch, minlength=num_graphs).cumsum(0).tolist()
        out, at = [], 0
        for b in range(num_graphs):
            inside = inside_all[at: at + counts[b]]
            at += counts[b]
            if inside.numel() < 8:  # nothing near: the nearest points of that frame
                lo = starts[b - 1] if b else 0
                d = dist[lo: starts[b]]
                inside = lo + d.topk(min(self.num_points, d.numel()), largest=False).indices
            m = inside.numel()
            if self.training:
                pick = torch.randperm(m, device=pos.device)[: self.num_points]
                if m < self.num_points:
                    pick = torch.cat([pick, torch.randint(m, (self.num_points - m,), device=pos.device)])
            else:
                pick = ((torch.arange(self.num_points, device=pos.device) + 0.5) * m
                        / self.num_points).long().clamp_max(m - 1)
            out.append(inside[pick])
        return torch.stack(out)

    def forward(self, data: object) -> dict:
        dtype = next(self.parameters()).dtype
        pos, x, batch, num_graphs = check_model_input(data, self.in_channels, dtype)
        loc_index, loc_logits, centre = self.localize(pos, x, batch, num_graphs)
        y = getattr(data, "y", None)
        if self.training and isinstance(y, Tensor) and y.shape == batch.shape:
            centre = self.training_centre(centre, pos, y, batch, num_graphs)
        crop_index = self.crop(pos, batch, centre)
        crop_pos = pos[crop_index]  # [B, M, 3]
        flat = crop_pos.reshape(-1, 3)
        crop_batch = torch.arange(num_graphs, device=pos.device).repeat_interleave(self.num_points)
        probs = torch.sigmoid(knn_interpolate(loc_logits.detach(), pos[loc_index].detach(),
                                              flat.detach(), batch[loc_index], crop_batch))
        prob, arm_prob = probs.T.reshape(2, num_graphs, self.num_points)
        origin, axes = _principal_frame(crop_pos.detach(), prob + 1e-3, arm_prob)
        local = torch.einsum("bmc,bcd->bmd", crop_pos - origin[:, None], axes) / self.norm_scale
        feats = probs
        if x is not None:
            feats = torch.cat([feats, x[crop_index.reshape(-1)]], dim=1)
        h, _ = self.backbone(local.reshape(-1, 3), feats, crop_batch, num_graphs)
        ph = self.point_head(h).view(num_graphs, self.num_points, NUM_JOINTS, 4)
        offsets = ph[..., :3]
        attn = torch.softmax(ph[..., 3], dim=1)  # over points, per joint
        vote = (attn[..., None] * (local[:, :, None] + offsets)).sum(1)
        pooled = global_max_pool(h, crop_batch, size=num_graphs)
        reg = self.global_head(pooled).view(num_graphs, NUM_JOINTS, 3)
        hand_scale = self.template_scale * torch.exp(self.scale_head(pooled)[:, 0].clamp(-1, 1))
        joints_local = torch.lerp(vote, reg, torch.sigmoid(self.blend_logit))
        network = torch.einsum("bjd,bcd->bjc", joints_local * self.norm_scale, axes) + origin[:, None]
        joints = network if self.training else self.refine(network, hand_scale, crop_pos, prob)
        return {"joints": joints, "joints_network": network, "hand_scale": hand_scale,
                "joints_local": joints_local, "vote": vote, "regression": reg,
                "hand_logits": loc_logits[:, 0], "forearm_logits": loc_logits[:, 1],
                "loc_index": loc_index, "centre": centre, "crop_index": crop_index,
                "crop_pos": crop_pos, "crop_prob": prob, "crop_forearm_prob": arm_prob,
                "local_pos": local, "offsets": offsets, "frame_origin": origin, "frame_axes": axes}

    def refine(self, joints: Tensor, hand_scale: Tensor, crop_pos: Tensor, prob: Tensor) -> Tensor:
        """The eval-time steps 8 and 9 of the module docstring on the network's
        camera-frame joints, as far as the loss weights and options switch them on."""
        def proportions(j: Tensor) -> Tensor:
            if self.weights.bone == 0:
                return j
            return refine_bone_proportions(j, self.bone_proportions, self.refine_steps,
                                           scale=hand_scale.detach())

        joints = proportions(joints)
        if self.surface_projection and self.weights.inside > 0:
            hand = (prob > 0.5).to(crop_pos.dtype)

            def project(j: Tensor) -> Tensor:
                return project_into_hand(j, crop_pos.detach(), hand)

            joints = project(proportions(project(joints)))
        return joints

    # ------------------------------------------------------------------ losses
    def to_local(self, joints: Tensor, outputs: dict) -> Tensor:
        """Camera-frame joints ``[B, 21, 3]`` in the normalised frame of ``outputs``."""
        return torch.einsum("bjc,bcd->bjd", joints - outputs["frame_origin"][:, None],
                            outputs["frame_axes"]) / self.norm_scale

    def loss_terms(self, outputs: dict, data: object) -> dict[str, Tensor]:
        """Each loss term (unweighted), a dict of scalars; zero-weight terms are skipped.

        * ``joints``, ``vote``, ``regression``: smooth-L1 (beta 0.1 units = 1 cm at the
          default scale) to ``data.joints`` in the normalised frame;
        * ``offsets``: smooth-L1 of ``point + offset`` to each joint, for points within 2
          units (20 cm) of it;
        * ``segmentation``: BCE of the localiser's hand output against ``data.y == 1``
          (when ``y`` is given per point), hand points weighted 5x (a hand covers ~5% of a
          frame), plus the same for its forearm output against ``data.label == 2`` (the
          forearm in :data:`geo3d.sim.hand_render.HAND_LABELS`) when ``label`` is given;
        * ``bone``, ``angle``, ``inside``: the structural terms of
          :mod:`geo3d.models.hand_losses` (``inside`` uses the crop points labelled hand by
          ``data.y``, else those with probability > 0.5).
        """
        w = self.weights
        gt = getattr(data, "joints", None)
        b = outputs["joints"].shape[0]
        if not isinstance(gt, Tensor) or gt.shape != (b * NUM_JOINTS, 3) and gt.shape != (b, NUM_JOINTS, 3):
            raise InvalidInputError(f"data.joints must hold [21, 3] joints per sample ({b} samples), "
                                    f"got {None if not isinstance(gt, Tensor) else list(gt.shape)}")
        gt = gt.reshape(b, NUM_JOINTS, 3).to(outputs["joints"].dtype)
        gt_local = self.to_local(gt, outputs)
        terms: dict[str, Tensor] = {}
        sl1 = lambda a: F.smooth_l1_loss(a, gt_local, beta=0.1)  # noqa: E731
        for name, key in (("joints", "joints_local"), ("vote", "vote"), ("regression", "regression")):
            if getattr(w, name) > 0:
                terms[name] = sl1(outputs[key])
        if w.offsets > 0:
            target = gt_local[:, None] - outputs["local_pos"][:, :, None]  # [B, M, J, 3]
            near = (target.norm(dim=-1, keepdim=True) < 2).to(target.dtype)
            err = F.smooth_l1_loss(outputs["offsets"], target, beta=0.1, reduction="none")
            terms["offsets"] = (err * near).sum() / (near.sum() * 3).clamp_min(1)
        y = getattr(data, "y", None)
        per_point = isinstance(y, Tensor) and y.dim() == 1 and y.shape[0] > outputs["loc_index"].max()
        if w.segmentation > 0 and per_point:
            target = (y[outputs["loc_index"]] == 1).to(outputs["hand_logits"].dtype)
            terms["segmentation"] = F.binary_cross_entropy_with_logits(
                outputs["hand_logits"], target, pos_weight=target.new_tensor(5.0))
            label = getattr(data, "label", None)
            if isinstance(label, Tensor) and label.shape == y.shape:
                arm = (label[outputs["loc_index"]] == FOREARM_LABEL).to(target.dtype)
                terms["segmentation"] = terms["segmentation"] + F.binary_cross_entropy_with_logits(
                    outputs["forearm_logits"], arm, pos_weight=arm.new_tensor(5.0))
        if w.bone > 0:
            true_scale = bone_lengths(gt).mean(1).clamp_min(1e-9)
            terms["bone"] = bone_length_loss(outputs["joints"], gt) + F.smooth_l1_loss(
                outputs["hand_scale"].log(), true_scale.log(), beta=0.2)
        if w.angle > 0:
            terms["angle"] = joint_angle_loss(outputs["joints"])
        if w.inside > 0:
            mask = (y[outputs["crop_index"]] == 1) if per_point else outputs["crop_prob"] > 0.5
            terms["inside"] = inside_hand_loss(outputs["joints"], outputs["crop_pos"],
                                               mask.to(outputs["joints"].dtype))
        return terms

    def loss(self, outputs: dict, data: object) -> Tensor:
        """The weighted sum of :meth:`loss_terms` (weights: ``self.weights``), a scalar."""
        terms = self.loss_terms(outputs, data)
        return sum(getattr(self.weights, k) * v for k, v in terms.items())

    def make_evaluator(self):
        """A :class:`geo3d.tasks.metrics.hand_pose.HandPoseEvaluator`."""
        from geo3d.tasks.metrics.hand_pose import HandPoseEvaluator
        return HandPoseEvaluator()


def _pointnet2(in_channels: int, width: int, depth: int, radii: tuple, ratios: tuple,
               max_neighbors: int) -> tuple[PointNet2, int]:
    sa = [(width * 2**l, width * 2**l, 2 * width * 2**l) for l in range(depth)]
    fp = [(4 * width, 4 * width)] * depth
    return (PointNet2(in_channels, sa, ratios[:depth], radii[:depth], max_neighbors,
                      fp_channels=fp), 4 * width)


def _check_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@register("hand_pose")
def hand_pose(
    *,
    in_channels: int = 0,
    num_classes: int = NUM_JOINTS,
    width: int = 32,
    depth: int = 3,
    loc_width: int = 16,
    loc_points: int = 1024,
    num_points: int = 512,
    crop_radius: float = 0.15,
    norm_scale: float = 0.1,
    max_neighbors: int = 32,
    head_hidden: Optional[int] = None,
    weights: Optional[HandPoseLossWeights] = None,
    refine_steps: int = 10,
    surface_projection: bool = True,
) -> HandPoseNet:
    """The hand-pose pipeline of :mod:`geo3d.models.hand_pose`.

    The pose backbone is PointNet++ with ``depth`` levels, level ``l`` MLP
    ``(w, w, 2w) * 2^l``, FPS ratios 1/4 and radii 0.25, 0.5, 1, 2 units (x ``norm_scale``
    metres), propagation MLPs ``(4w, 4w)``; the localiser the same with 3 levels, width
    ``loc_width``, radii 4, 10, 25 cm. ``width=32`` (default) has 356k parameters,
    ``width=8`` (:func:`hand_pose_small`) 32k.

    Args:
        in_channels: width of ``data.x`` (default 0: depth points only).
        num_classes: number of joints; must be 21 (the layout of
            :data:`geo3d.sim.hand.JOINTS`).
        width: base width ``w`` of the pose backbone (default 32).
        depth: set-abstraction levels of the pose backbone, 1-4 (default 3).
        loc_width: base width of the localiser (default 16).
        loc_points: frame points per sample for the localiser (default 1024; against 8
            and 512, 8 min of training of ``width=16`` on 160 x 120 frames: centre error
            32 -> 17 mm, frames localised > 5 cm off 12% -> 4%, mean joint error 47 -> 41 mm).
        num_points: crop points per sample (default 512).
        crop_radius: crop radius in metres (default 0.15).
        norm_scale: metres per normalised unit (default 0.1).
        max_neighbors: neighbours per centroid in both backbones (default 32).
        head_hidden: hidden width of the joint heads (default ``4 * width``).
        weights: loss weights (default ``HandPoseLossWeights()``: every term on).
        refine_steps: eval-time bone-proportion refinement steps (default 10; 0: off).
        surface_projection: project joints in front of the observed hand onto it at eval
            (default True; needs the ``inside`` loss term on).
    """
    check_int(in_channels, "in_channels", 0)
    if num_classes != NUM_JOINTS or isinstance(num_classes, bool):
        raise InvalidInputError(f"num_classes is the number of hand joints and must be "
                                f"{NUM_JOINTS}, got {num_classes!r}")
    check_int(width, "width", 1)
    check_int(depth, "depth", 1)
    if depth > 4:
        raise InvalidInputError(f"depth must be 1-4, got {depth}")
    check_int(loc_width, "loc_width", 1)
    check_int(loc_points, "loc_points", 16)
    check_int(num_points, "num_points", 16)
    check_int(max_neighbors, "max_neighbors", 1)
    check_int(refine_steps, "refine_steps", 0)
    if not isinstance(surface_projection, bool):
        raise InvalidInputError(f"surface_projection must be True or False, got {surface_projection!r}")
    crop_radius = _check_float(crop_radius, "crop_radius")
    norm_scale = _check_float(norm_scale, "norm_scale")
    head_hidden = 4 * width if head_hidden is None else check_int(head_hidden, "head_hidden", 1)
    weights = HandPoseLossWeights() if weights is None else weights
    if not isinstance(weights, HandPoseLossWeights):
        raise InvalidInputError(f"weights must be a HandPoseLossWeights, got {type(weights).__name__}")
    loc, loc_c = _pointnet2(in_channels, loc_width, 3, (0.04, 0.1, 0.25), (0.25, 0.25, 0.25),
                            max_neighbors)
    net, c = _pointnet2(in_channels + 2, width, depth, (0.25, 0.5, 1.0, 2.0), (0.25,) * 4,
                        max_neighbors)
    return HandPoseNet(loc, loc_c, net, c, in_channels, loc_points, num_points, crop_radius,
                       norm_scale, head_hidden, weights, refine_steps, surface_projection)


@register("hand_pose_small")
def hand_pose_small(*, in_channels: int = 0, num_classes: int = NUM_JOINTS, width: int = 8,
                    depth: int = 3, weights: Optional[HandPoseLossWeights] = None,
                    refine_steps: int = 10, surface_projection: bool = True) -> HandPoseNet:
    """:func:`hand_pose` with ``width=8``, ``loc_width=6``, ``head_hidden=32``: 32k
    parameters. Args as there.

    The localiser keeps the large model's 1,024 frame points: with 512 at width 4 (27k
    parameters), 5 epochs of training (``benchmarks/hand_pose.py --epochs 5``, seed 0) left
    20% of test crops centred > 5 cm off the hand, against 7.7% now, and a mean joint error
    of 54.7 mm against 35.7 (no structural terms; 37.2 against 57.0 with all).
    """
    return hand_pose(in_channels=in_channels, num_classes=num_classes, width=width, depth=depth,
                     loc_width=6, loc_points=1024, head_hidden=32, weights=weights,
                     refine_steps=refine_steps, surface_projection=surface_projection)
