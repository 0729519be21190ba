"""CenterPoint-style head: class heatmaps and box regression on a BEV map, its training
targets and loss, and the decoding of its outputs into boxes.

Yin, Zhou and Krähenbühl, "Center-based 3D Object Detection and Tracking", CVPR 2021; the
heatmap loss is CenterNet's (Zhou et al., "Objects as Points", 2019). Written in plain
torch: the reference implementations live inside mmdet3d / det3d with compiled ops and
their own box conventions. NMS is :func:`geo3d.geometry.boxes.nms_bev`.

Loss, term by term (``P`` = GT boxes whose centre lies on the grid, at least 1):

* heatmap, penalty-reduced focal loss, ``alpha = 2``, ``beta = 4``, over every cell ``c``
  and class: ``-1/P * [sum_{t=1} (1-p)^2 log p + sum_{t<1} (1-t)^4 p^2 log(1-p)]``, with the
  target ``t`` a Gaussian around each box centre cell (``sigma`` = a sixth of the box's
  larger BEV side in output cells, at least 0.5), 1 at the centre cell;
* regression, L1 at the centre cell of each box, summed over the 8 coded values
  (sub-cell offset along x and y, centre z, ``log l``, ``log w``, ``log h``, ``sin yaw``,
  ``cos yaw``) and averaged over the ``P`` boxes;
* total: ``heatmap + 0.25 * regression`` (CenterPoint's weight).
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import nms_bev
from geo3d.models.detection.bev import BEVGrid

__all__ = ["CenterHead", "frame_boxes", "REG_WEIGHT"]

REG_WEIGHT = 0.25
_WINDOW = 3  # heatmap Gaussians are drawn within +-3 cells of the centre
_MAX_LOG_SIZE = 4.0  # decoded sizes are capped at e^4 = 55 m


def frame_boxes(data: object, num_graphs: int) -> List[Tuple[Tensor, Tensor]]:
    """Split ``data.boxes`` / ``data.box_labels`` of a ``Batch`` into one pair per frame.

    Frames are found from the batch's slices (``Batch.from_data_list``), or from
    ``data.boxes_batch`` (``follow_batch=["boxes"]``); a ``Data`` is one frame.

    Raises:
        InvalidInputError: missing or malformed boxes/labels, or a batch whose frames cannot
            be told apart.
    """
    boxes, labels = getattr(data, "boxes", None), getattr(data, "box_labels", None)
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 7 \
            or not boxes.is_floating_point():
        raise InvalidInputError("data.boxes must be a float tensor [K, 7] of ground-truth boxes "
                                f"(the detection loss needs them), got {_describe(boxes)}")
    if not isinstance(labels, Tensor) or labels.shape != (boxes.shape[0],) \
            or labels.is_floating_point() or labels.dtype == torch.bool:
        raise InvalidInputError(f"data.box_labels must be an integer tensor [{boxes.shape[0]}], "
                                f"got {_describe(labels)}")
    if boxes.numel() and not bool(torch.isfinite(boxes).all()):
        raise InvalidInputError("data.boxes contains NaN or Inf values")
    slices = getattr(data, "_slice_dict", None)
    if isinstance(slices, dict) and "boxes" in slices:
        ptr = slices["boxes"].tolist()
        ptr = ptr + [ptr[-1]] * (num_graphs + 1 - len(ptr))
        return [(boxes[ptr[i]:ptr[i + 1]], labels[ptr[i]:ptr[i + 1]]) for i in range(num_graphs)]
    owner = getattr(data, "boxes_batch", None)
    if isinstance(owner, Tensor) and owner.shape == (boxes.shape[0],):
        return [(boxes[owner == i], labels[owner == i]) for i in range(num_graphs)]
    if num_graphs == 1:
        return [(boxes, labels)]
    raise InvalidInputError("data holds several frames but its boxes cannot be assigned to them: "
                            "build it with Batch.from_data_list or follow_batch=['boxes']")


def _describe(t: object) -> str:
    return f"{t.dtype} {list(t.shape)}" if isinstance(t, Tensor) else type(t).__name__


class CenterHead(nn.Module):
    """Class heatmaps and 8 regression channels on the BEV feature map.

    Args:
        in_channels: BEV feature width.
        num_classes: heatmap channels (box label ``c`` draws into channel ``c``).
        grid: the input BEV grid; the head works at twice its cell size.
        hidden: width of the shared 3x3 convolution (default 64).

    Shapes:
        ``[B, C, H, W] -> {"heatmap": [B, num_classes, H, W] (logits), "offset": [B, 2, H, W],
        "z": [B, 1, H, W], "size": [B, 3, H, W] (log metres), "yaw": [B, 2, H, W] (sin, cos)}``.
    """

    def __init__(self, in_channels: int, num_classes: int, grid: BEVGrid, hidden: int = 64) -> None:
        super().__init__()
        self.num_classes, self.grid = num_classes, grid
        self.cell = 2 * grid.cell_size
        self.shared = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(hidden), nn.ReLU())
        self.heatmap = nn.Conv2d(hidden, num_classes, 1)
        self.regression = nn.Conv2d(hidden, 8, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.1) / 0.1))  # prior p = 0.1

    def forward(self, bev: Tensor) -> Dict[str, Tensor]:
        h = self.shared(bev)
        reg = self.regression(h)
        return {"heatmap": self.heatmap(h), "offset": reg[:, 0:2], "z": reg[:, 2:3],
                "size": reg[:, 3:6], "yaw": reg[:, 6:8]}

    # ------------------------------------------------------------------ targets and loss

    def _centres(self, boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """Continuous output-grid coordinates ``[K, 2]`` (row along x, column along y) and
        whether each centre lies on the grid."""
        uv = torch.stack([(boxes[:, 0] - self.grid.x_range[0]) / self.cell,
                          (boxes[:, 1] - self.grid.y_range[0]) / self.cell], dim=1)
        h, w = self.grid.shape[0] // 2, self.grid.shape[1] // 2
        on = (uv[:, 0] >= 0) & (uv[:, 0] < h) & (uv[:, 1] >= 0) & (uv[:, 1] < w)
        return uv, on

    @torch.no_grad()
    def targets(self, per_frame: Sequence[Tuple[Tensor, Tensor]], dtype: torch.dtype,
                device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
        """Heatmap target ``[B, C, H, W]``; flat centre cell indices ``[P]`` into ``B*H*W``;
        regression targets ``[P, 8]``."""
        h, w = self.grid.shape[0] // 2, self.grid.shape[1] // 2
        b = len(per_frame)
        heat = torch.zeros(b * self.num_classes * h * w, dtype=dtype, device=device)
        cells, regs = [], []
        r = torch.arange(-_WINDOW, _WINDOW + 1, device=device)
        dr, dc = torch.meshgrid(r, r, indexing="ij")
        dr, dc = dr.reshape(-1), dc.reshape(-1)
        for i, (boxes, labels) in enumerate(per_frame):
            boxes, labels = boxes.to(device=device, dtype=dtype), labels.to(device)
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise InvalidInputError(f"data.box_labels must be in [0, {self.num_classes}), got "
                                        f"[{int(labels.min())}, {int(labels.max())}]")
            uv, on = self._centres(boxes)
            boxes, labels, uv = boxes[on], labels[on], uv[on]
            if not boxes.shape[0]:
                continue
            ij = uv.floor().long()
            sigma = (boxes[:, 3:5].amax(1) / self.cell / 6).clamp_min(0.5)
            rows, cols = ij[:, :1] + dr, ij[:, 1:] + dc  # [K, window^2]
            g = torch.exp(-(dr.to(dtype) ** 2 + dc.to(dtype) ** 2) / (2 * sigma[:, None] ** 2))
            ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
            flat = ((i * self.num_classes + labels[:, None]) * h + rows) * w + cols
            heat.scatter_reduce_(0, flat[ok], g[ok], "amax")
            cells.append((i * h + ij[:, 0]) * w + ij[:, 1])
            size = boxes[:, 3:6].clamp_min(1e-3).log()
            regs.append(torch.cat([uv - ij.to(dtype), boxes[:, 2:3], size,
                                   torch.sin(boxes[:, 6:7]), torch.cos(boxes[:, 6:7])], dim=1))
        cell = torch.cat(cells) if cells else torch.empty(0, dtype=torch.long, device=device)
        reg = torch.cat(regs) if regs else torch.empty(0, 8, dtype=dtype, device=device)
        return heat.view(b, self.num_classes, h, w), cell, reg

    def loss(self, outputs: Dict[str, Tensor], data: object) -> Tensor:
        """``focal heatmap loss + 0.25 * L1 box regression`` (module docstring), a scalar."""
        logits = outputs["heatmap"]
        b = logits.shape[0]
        heat, cell, reg_t = self.targets(frame_boxes(data, b), logits.dtype, logits.device)
        log_p, log_q = F.logsigmoid(logits), F.logsigmoid(-logits)
        p = torch.sigmoid(logits)
        pos = heat == 1
        num = max(int(cell.shape[0]), 1)
        pos_loss = ((1 - p) ** 2 * log_p)[pos].sum()
        neg_loss = ((1 - heat) ** 4 * p ** 2 * log_q)[~pos].sum()
        heat_loss = -(pos_loss + neg_loss) / num
        reg = torch.cat([outputs[k] for k in ("offset", "z", "size", "yaw")], dim=1)
        reg = reg.permute(0, 2, 3, 1).reshape(-1, 8)[cell]
        reg_loss = (reg - reg_t).abs().sum() / num
        return heat_loss + REG_WEIGHT * reg_loss

    # ------------------------------------------------------------------ decoding

    @torch.no_grad()
    def decode(self, outputs: Dict[str, Tensor], score_threshold: float, nms_iou: float,
               max_detections: int) -> List[Data]:
        """Peaks of the heatmaps (3x3 local maxima above ``score_threshold``, the top
        ``max_detections`` per frame) to boxes, then per-class BEV NMS at ``nms_iou``.

        Returns:
            One ``Data(boxes [K, 7] float32, box_labels [K] long, box_scores [K] float32)``
            per frame, by descending score.
        """
        prob = torch.sigmoid(outputs["heatmap"].float())
        b, c, h, w = prob.shape
        peak = prob == F.max_pool2d(prob, 3, stride=1, padding=1)
        scores = (prob * peak).view(b, -1)
        k = min(max_detections, scores.shape[1])
        reg = torch.cat([outputs[n].float() for n in ("offset", "z", "size", "yaw")], dim=1)
        out = []
        for i in range(b):
            s, idx = scores[i].topk(k)
            keep = s > score_threshold
            s, idx = s[keep], idx[keep]
            label, rem = idx // (h * w), idx % (h * w)
            row, col = rem // w, rem % w
            r = reg[i, :, row, col].T  # [K, 8]
            boxes = torch.stack([
                self.grid.x_range[0] + (row + r[:, 0]) * self.cell,
                self.grid.y_range[0] + (col + r[:, 1]) * self.cell,
                r[:, 2],
                *r[:, 3:6].clamp(max=_MAX_LOG_SIZE).exp().unbind(1),
                torch.atan2(r[:, 6], r[:, 7]),
            ], dim=1)
            kept = torch.cat([idx_c[nms_bev(boxes[idx_c], s[idx_c], nms_iou)]
                              for idx_c in (torch.nonzero(label == cls).view(-1)
                                            for cls in range(c))])
            kept = kept[s[kept].argsort(descending=True, stable=True)]
            out.append(Data(boxes=boxes[kept].cpu(), box_labels=label[kept].cpu(),
                            box_scores=s[kept].cpu()))
        return out
