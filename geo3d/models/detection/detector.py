"""``PointDetector``: a point backbone, a BEV map and a CenterPoint head (``pointnet2_det``,
``dgcnn_det``).

The pipeline (our own glue, see :mod:`geo3d.models.detection.bev` and
:mod:`geo3d.models.detection.head` for the parts and the papers):

1. keep the points inside the grid's box, one per ``voxel_size`` voxel;
2. per-point features from a geo3d backbone (PointNet++ with feature propagation back to
   every point, or DGCNN), fed ``[x, z]``: the absolute height is appended to ``data.x``
   because PointNet++'s grouping only sees relative positions;
3. max-pooling into BEV cells (+ a log point count), a two-scale 2D CNN;
4. the CenterPoint head: class heatmaps, sub-cell offset, z, log size, sin/cos yaw;
5. ``decode``/``predict``: heatmap peaks to 7-DoF boxes, per-class BEV NMS.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.models._layers import check_int, check_model_input
from geo3d.models.backbones.dgcnn import DGCNN
from geo3d.models.backbones.pointnet2 import PointNet2, _levels, _with_depth
from geo3d.models.detection.bev import BEVGrid, BEVNet, crop_and_voxelize, scatter_to_bev
from geo3d.models.detection.head import CenterHead
from geo3d.models.registry import register

__all__ = ["PointDetector", "pointnet2_det", "dgcnn_det"]


class PointDetector(nn.Module):
    """3D object detector on point features (CenterPoint-style BEV head).

    Args:
        backbone: ``(pos [M, 3], x [M, in_channels + 1], batch [M], num_graphs) ->
            (features [M, point_channels], batch [M])`` on the kept points.
        in_channels: width of ``data.x`` (0: positions only).
        point_channels: width of the backbone's per-point features.
        num_classes: object classes (box labels ``0..num_classes-1``; default 3: car,
            pedestrian, cyclist as in :data:`geo3d.sim.classes.CLASSES`).
        grid: the BEV grid (range, cell and voxel sizes).
        width: BEV CNN base width.
        score_threshold: minimum heatmap score of a detection (default 0.1).
        nms_iou: per-class BEV NMS threshold (default 0.1).
        max_detections: at most this many boxes per frame (default 100).

    Shapes:
        ``model(data)``: ``data.pos [N, 3]``, ``data.x [N, in_channels]``, ``data.batch``
        -> dict of head outputs ``[B, *, H/2, W/2]`` (see :class:`CenterHead`).
        ``model.predict(data)``: one ``Data(boxes, box_labels, box_scores)`` per frame.
    """

    task = "detection"

    def __init__(self, backbone: nn.Module, in_channels: int, point_channels: int,
                 num_classes: int, grid: BEVGrid, width: int, score_threshold: float = 0.1,
                 nms_iou: float = 0.1, max_detections: int = 100) -> None:
        super().__init__()
        self.backbone, self.in_channels, self.grid = backbone, in_channels, grid
        self.point_channels, self.num_classes = point_channels, num_classes
        self.score_threshold, self.nms_iou = float(score_threshold), float(nms_iou)
        self.max_detections = max_detections
        self.bev_net = BEVNet(point_channels + 1, width)
        self.head = CenterHead(self.bev_net.out_channels, num_classes, grid, hidden=2 * width)

    def forward(self, data: object) -> Dict[str, Tensor]:
        dtype = next(self.parameters()).dtype
        pos, x, batch, num_graphs = check_model_input(data, self.in_channels, dtype)
        keep = crop_and_voxelize(pos, batch, self.grid)
        pos, batch = pos[keep], batch[keep]
        feats = pos[:, 2:3] if x is None else torch.cat([x[keep], pos[:, 2:3]], dim=1)
        if pos.shape[0]:
            point_feats, _ = self.backbone(pos, feats, batch, num_graphs)
        else:  # nothing inside the grid: an empty map (every cell 0)
            point_feats = pos.new_zeros((0, self.point_channels))
        bev = scatter_to_bev(point_feats, pos, batch, num_graphs, self.grid)
        return self.head(self.bev_net(bev))

    def loss(self, outputs: Dict[str, Tensor], data: object) -> Tensor:
        """Focal heatmap loss + 0.25 x L1 regression against ``data.boxes`` /
        ``data.box_labels`` (see :mod:`geo3d.models.detection.head`), a scalar."""
        return self.head.loss(outputs, data)

    def decode(self, outputs: Dict[str, Tensor], data: object = None) -> List[Data]:
        """Boxes of each frame after NMS: ``Data(boxes [K, 7], box_labels [K],
        box_scores [K])`` (float32 on the CPU), by descending score. ``data`` is unused
        (kept for the evaluator protocol)."""
        return self.head.decode(outputs, self.score_threshold, self.nms_iou, self.max_detections)

    @torch.no_grad()
    def predict(self, data: object) -> List[Data]:
        """``decode(self(data))`` in eval mode (the mode is restored)."""
        was = self.training
        self.eval()
        try:
            return self.decode(self(data), data)
        finally:
            self.train(was)

    def make_evaluator(self):
        """A :class:`geo3d.tasks.metrics.detection.DetectionEvaluator` (key metric
        ``mAP_3d``) that decodes this model's outputs."""
        from geo3d.tasks.metrics.detection import DetectionEvaluator

        return DetectionEvaluator(self.decode)


def _grid(x_range, y_range, z_range, cell_size, voxel_size) -> BEVGrid:
    return BEVGrid(tuple(x_range), tuple(y_range), tuple(z_range), cell_size, voxel_size)


def _post(score_threshold: float, nms_iou: float, max_detections: int) -> None:
    for name, v in (("score_threshold", score_threshold), ("nms_iou", nms_iou)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise InvalidInputError(f"{name} must be a number in [0, 1], got {v!r}")
    check_int(max_detections, "max_detections", 1)


@register("pointnet2_det")
def pointnet2_det(
    *,
    in_channels: int = 0,
    num_classes: int = 3,
    width: int = 32,
    depth: Optional[int] = None,
    ratios: Sequence[float] = (0.25, 0.25),
    radii: Sequence[float] = (0.6, 1.5),
    max_neighbors: int = 32,
    x_range: Tuple[float, float] = (-51.2, 51.2),
    y_range: Tuple[float, float] = (-51.2, 51.2),
    z_range: Tuple[float, float] = (-4.0, 4.0),
    cell_size: float = 0.4,
    voxel_size: float = 0.2,
    score_threshold: float = 0.1,
    nms_iou: float = 0.1,
    max_detections: int = 100,
) -> PointDetector:
    """PointNet++ (SSG) point features -> BEV -> CenterPoint head.

    PointNet++ level ``l`` has MLP ``(w, w, 2w) * 2^l``; feature propagation back to every
    kept point ends at width ``w``; the BEV CNN has widths ``w, 2w, 4w``.

    Args:
        in_channels: width of ``data.x`` (default 0; the height ``z`` is always added).
        num_classes: object classes (default 3).
        width: base width ``w`` (default 32).
        depth: PointNet++ levels; None (default) uses ``len(ratios)``.
        ratios, radii: FPS ratio and grouping radius (metres) per level
            (default ``(0.25, 0.25)`` and ``(0.6, 1.5)``).
        max_neighbors: nearest neighbours per centroid (default 32).
        x_range, y_range, z_range: the grid's box in metres (default +-51.2, +-51.2, -4..4).
        cell_size: BEV cell (default 0.4 m; the head predicts every 0.8 m).
        voxel_size: input points are thinned to one per voxel (default 0.2 m; 0: off).
        score_threshold, nms_iou, max_detections: decoding (default 0.1, 0.1, 100).
    """
    grid = _grid(x_range, y_range, z_range, cell_size, voxel_size)
    _post(score_threshold, nms_iou, max_detections)
    ratios, radii = _with_depth(ratios, radii, depth)
    ratios, radii, sa = _levels(ratios, radii, width, max_neighbors, in_channels, num_classes, 0.0)
    fp = [(4 * width, 2 * width)] * (len(ratios) - 1) + [(2 * width, width)]
    backbone = PointNet2(in_channels + 1, sa, ratios, radii, max_neighbors, fp_channels=fp)
    return PointDetector(backbone, in_channels, width, num_classes, grid, width,
                         score_threshold, nms_iou, max_detections)


@register("dgcnn_det")
def dgcnn_det(
    *,
    in_channels: int = 0,
    num_classes: int = 3,
    width: int = 32,
    depth: int = 3,
    emb_channels: int = 64,
    k: int = 16,
    x_range: Tuple[float, float] = (-51.2, 51.2),
    y_range: Tuple[float, float] = (-51.2, 51.2),
    z_range: Tuple[float, float] = (-4.0, 4.0),
    cell_size: float = 0.4,
    voxel_size: float = 0.3,
    score_threshold: float = 0.1,
    nms_iou: float = 0.1,
    max_detections: int = 100,
) -> PointDetector:
    """DGCNN point features -> BEV -> CenterPoint head.

    ``depth`` EdgeConvs of one layer of width ``w`` each, then an ``emb_channels``
    embedding per point (no global pooling: a frame is not one object). DGCNN's dynamic
    graph is a brute-force kNN in feature space, O(N^2) per frame, hence the coarser
    default voxel (0.3 m: ~12k points per SyntheticLidar frame).

    Args:
        in_channels: width of ``data.x`` (default 0; the height ``z`` is always added).
        num_classes: object classes (default 3).
        width: EdgeConv width and BEV CNN base width (default 32).
        depth: EdgeConv layers (default 3).
        emb_channels: per-point feature width (default 64).
        k: neighbours per point (default 16).
        x_range, y_range, z_range, cell_size: the grid (as :func:`pointnet2_det`).
        voxel_size: input thinning (default 0.3 m).
        score_threshold, nms_iou, max_detections: decoding (default 0.1, 0.1, 100).
    """
    grid = _grid(x_range, y_range, z_range, cell_size, voxel_size)
    _post(score_threshold, nms_iou, max_detections)
    for name, v, lo in (("in_channels", in_channels, 0), ("num_classes", num_classes, 1),
                        ("width", width, 1), ("depth", depth, 1),
                        ("emb_channels", emb_channels, 1), ("k", k, 1)):
        check_int(v, name, lo)
    backbone = DGCNN(in_channels + 1, tuple((width,) for _ in range(depth)), emb_channels, k,
                     concat_local=False)
    return PointDetector(backbone, in_channels, emb_channels, num_classes, grid, width,
                         score_threshold, nms_iou, max_detections)
