"""DGCNN: dynamic EdgeConv on PyG ``MessagePassing``, graphs from geo3d's own kNN.

Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", ACM TOG 38(5), 2019.

EdgeConv (aggregation ``max`` over the ``k`` nearest neighbours, the point included):

    x_i' = max_{j in kNN(i)} h([x_i, x_j - x_i]),   h = MLP (Linear, BatchNorm, LeakyReLU 0.2)

PyG's ``DynamicEdgeConv`` needs torch-cluster, which is not used here; the graph comes from
:func:`geo3d.models._layers.feature_knn_graph`: the first layer's graph is the kNN in xyz
(``geo3d.geometry.knn_graph``: scipy cKDTree, exact), each later layer's graph is recomputed
in the feature space of that layer's input (the "dynamic" graph) by a chunked torch
``addmm`` + ``topk`` brute force, because a kd-tree is ~10x slower in 64-D (measured on 2
cores, 16,384 points, k = 20: cKDTree 24 s, brute force ~2 s; in 3-D cKDTree 0.1 s).

Two exact rewrites make EdgeConv cheap: the first linear layer of ``h`` is split,
``W [x_i, x_j - x_i] + b = (W_a - W_b) x_i + b + W_b x_j``, so it runs once per point instead
of once per edge; and when every point has exactly ``k`` neighbours (the usual case), the
``x_i`` part is broadcast over the ``k`` edges instead of gathered, and the ``max`` is a
reshape to ``[N, k, C]`` and a dense max instead of a scatter (general graphs go through
``propagate``).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from geo3d.models._layers import (
    check_channels,
    check_dropout,
    check_int,
    feature_knn_graph,
    mlp,
)
from geo3d.models.heads import ClassificationHead, PointCloudModel, SegmentationHead
from geo3d.models.registry import register

__all__ = ["EdgeConv", "DGCNN", "dgcnn_cls", "dgcnn_seg"]


class EdgeConv(MessagePassing):
    """EdgeConv: ``x_i' = max_j MLP([x_i, x_j - x_i])`` over a given graph.

    The MLP is ``Linear(2 * in_channels, c_1) -> BN -> LeakyReLU -> ... -> c_L`` (each layer
    normalised and activated). Its first layer is evaluated per point (see the module
    docstring), which is exactly the same function.

    Args:
        in_channels: width of ``x``.
        channels: output widths of the MLP layers, e.g. ``(64, 64)``.

    Shapes:
        ``x [N, in_channels], edge_index [2, E]`` (row 0 neighbour ``j``, row 1 centre ``i``)
        ``-> [N, channels[-1]]``. ``k``: when given, every centre has exactly ``k`` edges and
        they are grouped by centre in order (the layout of ``feature_knn_graph``).
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__(aggr="max")
        self.in_channels = in_channels
        self.first = nn.Linear(2 * in_channels, channels[0], bias=False)
        self.post = nn.Sequential(
            nn.BatchNorm1d(channels[0]),
            nn.LeakyReLU(0.2),
            *mlp(list(channels), act="leaky_relu"),
        )

    def forward(self, x: Tensor, edge_index: Tensor, k: Optional[int] = None) -> Tensor:
        w_a, w_b = self.first.weight[:, : self.in_channels], self.first.weight[:, self.in_channels :]
        centre = x @ (w_a - w_b).T  # [N, c_1], the x_i part
        nbr = x @ w_b.T  # [N, c_1], the x_j part
        n = x.shape[0]
        if k is not None and edge_index.shape[1] == n * k:
            # k edges per centre, grouped in order: message and aggregate of propagate, with
            # one gather (x_j) and the x_i part broadcast instead of gathered
            h = centre.unsqueeze(1) + nbr.index_select(0, edge_index[0]).view(n, k, -1)
            return self.post(h.view(n * k, -1)).view(n, k, -1).amax(dim=1)
        return self.propagate(edge_index, centre=centre, nbr=nbr, k=k, size=(n, n))

    def message(self, centre_i: Tensor, nbr_j: Tensor) -> Tensor:
        return self.post(centre_i + nbr_j)

    def aggregate(self, inputs: Tensor, index: Tensor, ptr=None, dim_size=None, k=None) -> Tensor:
        if k is not None and dim_size is not None and inputs.shape[0] == dim_size * k:
            return inputs.view(dim_size, k, -1).amax(dim=1)
        return super().aggregate(inputs, index, ptr=ptr, dim_size=dim_size)


class DGCNN(nn.Module):
    """DGCNN backbone: dynamic EdgeConv layers, their concatenation and an embedding.

    Layer 1 sees ``[pos, x]`` with the kNN graph of ``pos``; layer ``l > 1`` sees the
    output of layer ``l - 1`` with the kNN graph of that output (recomputed, not
    differentiated). The concatenated layer outputs go through ``Linear -> BN -> LeakyReLU``
    to ``emb_channels``.

    Args:
        in_channels: width of ``data.x`` (0: ``pos`` only).
        layers: MLP widths of each EdgeConv, e.g. ``((64, 64), (64, 64), (64,))``.
        emb_channels: width of the per-point embedding (default 1024 in the factories).
        k: neighbours per point, the point itself included (default 20).
        concat_local: also return the concatenated layer outputs before the embedding
            (segmentation: ``[local | emb]``).

    Shapes:
        ``pos [N, 3], x [N, in_channels] | None, batch [N] -> (features [N, C], batch [N])``
        with ``C = emb_channels`` (+ ``sum(layer widths)`` when ``concat_local``).
    """

    def __init__(
        self,
        in_channels: int,
        layers: Sequence[Sequence[int]],
        emb_channels: int,
        k: int,
        concat_local: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.k = k
        self.concat_local = concat_local
        convs = []
        width = 3 + in_channels
        for chans in layers:
            convs.append(EdgeConv(width, chans))
            width = chans[-1]
        self.convs = nn.ModuleList(convs)
        self.local_channels = sum(c[-1] for c in layers)
        self.emb = mlp([self.local_channels, emb_channels], act="leaky_relu")
        self.out_channels = emb_channels + (self.local_channels if concat_local else 0)

    def forward(
        self,
        pos: Tensor,
        x: Optional[Tensor],
        batch: Tensor,
        num_graphs: int = 1,
        return_graphs: bool = False,
    ):
        h = pos if x is None else torch.cat([pos, x], dim=1)
        graph_space = pos
        outs: List[Tensor] = []
        graphs: List[Tensor] = []
        for conv in self.convs:
            edge_index = feature_knn_graph(graph_space, self.k, batch)
            regular = edge_index.shape[1] == h.shape[0] * self.k
            h = conv(h, edge_index, k=self.k if regular else None)
            outs.append(h)
            graphs.append(edge_index)
            graph_space = h
        local = torch.cat(outs, dim=1)
        feats = self.emb(local)
        if self.concat_local:
            feats = torch.cat([local, feats], dim=1)
        if return_graphs:
            return feats, batch, graphs
        return feats, batch


def _common(in_channels, num_classes, width, depth, emb_channels, k, dropout):
    check_int(in_channels, "in_channels", 0)
    check_int(num_classes, "num_classes", 1)
    check_int(width, "width", 1)
    check_int(depth, "depth", 1)
    check_int(emb_channels, "emb_channels", 1)
    check_int(k, "k", 1)
    check_dropout(dropout)


@register("dgcnn_cls")
def dgcnn_cls(
    *,
    in_channels: int = 0,
    num_classes: int,
    width: int = 64,
    depth: int = 4,
    emb_channels: int = 1024,
    k: int = 20,
    head_channels: Sequence[int] = (512, 256),
    dropout: float = 0.5,
) -> PointCloudModel:
    """DGCNN classifier (the paper's ModelNet40 model with the defaults).

    EdgeConv ``l`` has one layer of width ``width * (1, 1, 2, 4, 8, ...)[l]`` (defaults:
    64, 64, 128, 256), then a 1024-wide embedding, max + mean pooling and an MLP head.

    Args:
        in_channels: width of ``data.x`` (default 0: ``pos`` only).
        num_classes: number of classes.
        width: base width (default 64).
        depth: number of EdgeConv layers (default 4).
        emb_channels: embedding width before pooling (default 1024).
        k: neighbours per point (default 20).
        head_channels: hidden widths of the head MLP (default ``(512, 256)``).
        dropout: head dropout (default 0.5).

    Returns:
        A :class:`PointCloudModel` with ``task == "classification"``; logits
        ``[num_graphs, num_classes]``.
    """
    _common(in_channels, num_classes, width, depth, emb_channels, k, dropout)
    head_channels = check_channels(head_channels, "head_channels", 0)
    layers = tuple((width * (1 if l < 2 else 2 ** (l - 1)),) for l in range(depth))
    backbone = DGCNN(in_channels, layers, emb_channels, k, concat_local=False)
    head = ClassificationHead(emb_channels, num_classes, head_channels, dropout, pool="max_mean")
    return PointCloudModel(backbone, head)


@register("dgcnn_seg")
def dgcnn_seg(
    *,
    in_channels: int = 0,
    num_classes: int,
    width: int = 64,
    depth: int = 3,
    emb_channels: int = 1024,
    k: int = 20,
    head_channels: Sequence[int] = (512, 256),
    dropout: float = 0.5,
    class_weights: Optional[Sequence[float]] = None,
    lovasz_weight: float = 0.0,
) -> PointCloudModel:
    """DGCNN semantic segmentation (the paper's S3DIS model with the defaults).

    ``depth`` EdgeConvs of two layers of ``width`` each (the last one a single layer),
    the embedding max-pooled per cloud and broadcast to every point, concatenated with
    the EdgeConv outputs, then a per-point MLP head.

    Args:
        in_channels: width of ``data.x`` (default 0: ``pos`` only).
        num_classes: number of classes.
        width: EdgeConv width (default 64).
        depth: number of EdgeConv layers (default 3).
        emb_channels: global feature width (default 1024).
        k: neighbours per point (default 20).
        head_channels: hidden widths of the head MLP (default ``(512, 256)``).
        dropout: head dropout (default 0.5).
        class_weights: per-class cross-entropy weights (default None: unweighted); see
            :class:`~geo3d.models.heads.SegmentationHead`.
        lovasz_weight: weight of the added Lovász-softmax loss (default 0: none).

    Returns:
        A :class:`PointCloudModel` with ``task == "segmentation"``; logits ``[N, num_classes]``.
    """
    _common(in_channels, num_classes, width, depth, emb_channels, k, dropout)
    head_channels = check_channels(head_channels, "head_channels", 0)
    layers = tuple((width,) if 0 < l == depth - 1 else (width, width) for l in range(depth))
    backbone = DGCNN(in_channels, layers, emb_channels, k, concat_local=True)
    head = SegmentationHead(
        backbone.out_channels, num_classes, head_channels, dropout, context_channels=emb_channels,
        class_weights=class_weights, lovasz_weight=lovasz_weight,
    )
    return PointCloudModel(backbone, head)
