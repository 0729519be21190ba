"""``PointCloudModel``: a backbone and a head behind the registry's model contract.

Our own ~30 lines: it validates the input ``Data``, runs ``backbone(pos, x, batch,
num_graphs) -> (features, feature_batch)`` then ``head(features, feature_batch,
num_graphs)``, and exposes ``task`` and ``loss`` from the head.
"""

from __future__ import annotations

from torch import Tensor, nn

from geo3d.models._layers import check_model_input

__all__ = ["PointCloudModel"]


class PointCloudModel(nn.Module):
    """Backbone + head, called on a torch_geometric ``Data``/``Batch``.

    Args:
        backbone: module ``(pos [N,3], x [N,F] or None, batch [N], num_graphs) ->
            (features [M,C], batch [M])``; it has an ``in_channels`` attribute.
        head: a :class:`~geo3d.models.heads.ClassificationHead` or
            :class:`~geo3d.models.heads.SegmentationHead` (anything with ``task`` and
            ``loss``).

    Shapes:
        ``data.pos [N, 3]``, ``data.x [N, in_channels]`` (ignored when ``in_channels`` is 0),
        ``data.batch [N]`` (absent: one sample) -> logits ``[N, C]`` (segmentation) or
        ``[num_graphs, C]`` (classification).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.task: str = head.task
        self.in_channels: int = backbone.in_channels

    def forward(self, data: object) -> Tensor:
        dtype = next(self.parameters()).dtype
        pos, x, batch, num_graphs = check_model_input(data, self.in_channels, dtype)
        features, feature_batch = self.backbone(pos, x, batch, num_graphs)
        return self.head(features, feature_batch, num_graphs)

    def loss(self, logits: Tensor, data: object) -> Tensor:
        """Cross-entropy of ``logits`` against ``data.y`` (-1 ignored), a scalar."""
        return self.head.loss(logits, data)
