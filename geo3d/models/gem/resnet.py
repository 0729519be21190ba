"""GEM-ResNet: a U-Net of gauge-equivariant residual blocks, registered as ``gem_seg``.

de Haan, Weiler, Cohen and Welling, "Gauge Equivariant Mesh CNNs", ICLR 2021. The paper's
FAUST model is a stack of GEM ResNet blocks at one resolution with XYZ or SHOT inputs;
ours adds :class:`~geo3d.models.gem.pool.ParallelTransportPool` levels so that a vertex
sees the whole shape from rotation-invariant inputs alone (the kept vertices of each level
come from graph coarsening, see :mod:`geo3d.models.gem.pool`).

Structure (``C = width``, ``N = order``, features ``[V, C, 2N+1]``):

* stem: ``GemConv`` from the input scalars (``data.x``, or a constant 1 with
  ``in_channels=0``) to order ``N``;
* encoder level ``l`` (``l = 0 .. levels-1``, ``C_l = C * 2^l``): ``depth`` residual
  blocks (``GemConv -> RegularBatchNorm -> RegularNonlinearity -> GemConv ->
  RegularBatchNorm``, plus the input through an equivariant linear map when widths
  differ, then the nonlinearity), then pooling to level ``l + 1``;
* decoder: unpool, concatenate the encoder's features of that level, one residual block;
* out: ``GemConv`` to order 0 (invariant scalars), batch norm and SiLU: ``[V, C]``.

The mesh geometry (:func:`geo3d.geometry.mesh.mesh_geometry`) and the coarsening are
recomputed in every forward pass from ``data.pos`` and ``data.face`` (milliseconds for
thousands of vertices), so re-triangulated or deformed meshes need no preprocessing.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from geo3d.errors import InvalidInputError
from geo3d.geometry.mesh import angular_weights, log_map, mesh_geometry, parallel_transport
from geo3d.models._layers import check_channels, check_dropout, check_int, check_model_input
from geo3d.models.gem.conv import GemConv
from geo3d.models.gem.kernels import self_interaction_basis
from geo3d.models.gem.nonlinearity import _ACTS, RegularBatchNorm, RegularNonlinearity
from geo3d.models.gem.pool import ParallelTransportPool, ParallelTransportUnpool, coarsen
from geo3d.models.heads import SegmentationHead
from geo3d.models.registry import register

__all__ = ["GemLevel", "mesh_levels", "GemResBlock", "GemResNet", "CorrespondenceHead",
           "GemMeshModel", "gem_seg", "gem_corr"]


class GemLevel(NamedTuple):
    """The graph of one resolution and the pooling from the finer one.

    ``cluster``/``pool_angle`` are None at the finest level; otherwise ``cluster [V_fine]``
    is the coarse index of each finer vertex and ``pool_angle [V_fine]`` the transport
    angle from it to its coarse vertex. ``weight [E]`` is the neighbour weighting of the
    convolutions (None: the uniform mean).
    """

    edge_index: Tensor
    theta: Tensor
    transport: Tensor
    batch: Tensor
    cluster: Optional[Tensor]
    pool_angle: Optional[Tensor]
    weight: Optional[Tensor] = None

    @property
    def graph(self) -> tuple:
        """The arguments of a :class:`GemConv` after the features."""
        return self.edge_index, self.theta, self.transport, self.weight


@torch.no_grad()
def mesh_levels(pos: Tensor, face: Tensor, batch: Tensor, levels: int, name: str = "data",
                neighbour_weights: str = "uniform") -> List[GemLevel]:
    """Geometry of the mesh and of ``levels - 1`` coarsenings of it (see the module doc).

    ``neighbour_weights="angle"`` adds the angular-sector weights of
    :func:`geo3d.geometry.mesh.angular_weights` to every level; ``"uniform"`` leaves them
    None (the plain mean over neighbours).
    """
    def weights(theta: Tensor, edge_index: Tensor, n: int) -> Optional[Tensor]:
        return angular_weights(theta, edge_index, n) if neighbour_weights == "angle" else None

    g = mesh_geometry(pos, face, name)
    out = [GemLevel(g.edge_index, g.theta, g.transport, batch, None, None,
                    weights(g.theta, g.edge_index, pos.shape[0]))]
    normal, e1, e2, edge_index = g.normal, g.e1, g.e2, g.edge_index
    for _ in range(levels - 1):
        c = coarsen(edge_index, batch)
        owner = c.keep[c.cluster]
        fine = torch.arange(pos.shape[0], device=pos.device)
        pool_angle = parallel_transport(normal, e1, e2, torch.stack([fine, owner]), pos)
        pos, normal, e1, e2 = pos[c.keep], normal[c.keep], e1[c.keep], e2[c.keep]
        batch, edge_index = batch[c.keep], c.edge_index
        theta = log_map(pos, normal, e1, e2, edge_index)[1]
        transport = parallel_transport(normal, e1, e2, edge_index, pos)
        out.append(GemLevel(edge_index, theta, transport, batch, c.cluster, pool_angle,
                            weights(theta, edge_index, pos.shape[0])))
    return out


class _GaugeLinear(nn.Module):
    """Equivariant per-vertex linear map (the self-interaction basis only)."""

    def __init__(self, in_channels: int, out_channels: int, order: int) -> None:
        super().__init__()
        basis = self_interaction_basis(order, order, torch.get_default_dtype())
        self.register_buffer("basis", basis, persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, basis.shape[0])
                                   / (in_channels * (2 * order + 1)) ** 0.5)

    def forward(self, x: Tensor) -> Tensor:
        w = torch.einsum("oib,bde->odie", self.weight, self.basis)
        return torch.einsum("odie,vie->vod", w, x)


class GemResBlock(nn.Module):
    """Residual block of two ``GemConv`` with ``RegularBatchNorm`` and ``RegularNonlinearity``.

    Args:
        in_channels, out_channels: channel counts (order ``order`` in and out).
        order: irrep order ``N``.
        num_samples, act: of the :class:`RegularNonlinearity`.

    Shapes:
        ``x [V, C_in, 2N+1]`` and a level's ``edge_index, theta, transport`` ->
        ``[V, C_out, 2N+1]``.
    """

    def __init__(self, in_channels: int, out_channels: int, order: int,
                 num_samples: Optional[int], act: str) -> None:
        super().__init__()
        self.conv1 = GemConv(in_channels, out_channels, order, order)
        self.norm1 = RegularBatchNorm(out_channels, order)
        self.conv2 = GemConv(out_channels, out_channels, order, order)
        self.norm2 = RegularBatchNorm(out_channels, order)
        self.act = RegularNonlinearity(order, num_samples, act)
        self.skip = None if in_channels == out_channels else _GaugeLinear(in_channels, out_channels, order)

    def forward(self, x: Tensor, level: GemLevel) -> Tensor:
        h = self.act(self.norm1(self.conv1(x, *level.graph)))
        h = self.norm2(self.conv2(h, *level.graph))
        return self.act(h + (x if self.skip is None else self.skip(x)))


class GemResNet(nn.Module):
    """The GEM-ResNet U-Net backbone (see the module docstring).

    Args:
        in_channels: scalar input features per vertex (0: a constant 1).
        width: channels ``C`` of the finest level (level ``l`` has ``C * 2^l``).
        depth: residual blocks per encoder level.
        order: maximal irrep order ``N`` of the hidden features.
        levels: resolutions (1: no pooling).
        num_samples: angles sampled by the nonlinearities (None: their default).
        act: pointwise function of the nonlinearities.
        neighbour_weights: ``"uniform"`` (the mean over the one-ring, as in the paper) or
            ``"angle"`` (each neighbour weighted by its angular sector, see
            :func:`mesh_levels`; less dependent on the triangulation).

    Shapes:
        ``pos [V, 3], x [V, in_channels] | None, face [3, T], batch [V] -> [V, width]``
        (gauge-invariant scalars).
    """

    def __init__(self, in_channels: int, width: int, depth: int, order: int, levels: int,
                 num_samples: Optional[int], act: str, neighbour_weights: str = "uniform") -> None:
        super().__init__()
        self.in_channels, self.levels, self.order = in_channels, levels, order
        self.neighbour_weights = neighbour_weights
        self.out_channels = width
        widths = [width * 2**l for l in range(levels)]
        self.stem = GemConv(max(in_channels, 1), width, 0, order)
        self.stem_norm = RegularBatchNorm(width, order)
        self.stem_act = RegularNonlinearity(order, num_samples, act)
        self.encoder = nn.ModuleList()
        for l, c in enumerate(widths):
            c_in = widths[l - 1] if l else width
            self.encoder.append(nn.ModuleList(
                GemResBlock(c_in if i == 0 else c, c, order, num_samples, act) for i in range(depth)))
        self.pool = ParallelTransportPool(order)
        self.unpool = ParallelTransportUnpool(order)
        self.decoder = nn.ModuleList(
            GemResBlock(widths[l + 1] + widths[l], widths[l], order, num_samples, act)
            for l in range(levels - 1))
        self.out = GemConv(width, width, order, 0)
        self.out_norm = nn.BatchNorm1d(width)

    def forward(self, pos: Tensor, x: Optional[Tensor], face: Tensor, batch: Tensor) -> Tensor:
        levels = mesh_levels(pos, face, batch, self.levels, neighbour_weights=self.neighbour_weights)
        h = pos.new_ones(pos.shape[0], 1, 1) if x is None else x[..., None]
        fine = levels[0]
        h = self.stem_act(self.stem_norm(self.stem(h, *fine.graph)))
        skips = []
        for l, blocks in enumerate(self.encoder):
            if l:
                lv = levels[l]
                h = self.pool(h, lv.cluster, lv.pool_angle, lv.batch.shape[0])
            for block in blocks:
                h = block(h, levels[l])
            skips.append(h)
        for l in range(self.levels - 2, -1, -1):
            up = levels[l + 1]
            h = self.unpool(h, up.cluster, up.pool_angle)
            h = self.decoder[l](torch.cat([h, skips[l]], dim=1), levels[l])
        h = self.out(h, *fine.graph)[..., 0]
        return nn.functional.silu(self.out_norm(h))


class CorrespondenceHead(SegmentationHead):
    """Dense correspondence as per-vertex classification over the template's vertex ids.

    A :class:`~geo3d.models.heads.SegmentationHead` (MLP to logits, cross-entropy against
    ``data.y`` = template vertex id, -1 ignored) whose classes are template vertices, as in
    the FAUST experiments of Masci et al. 2015 and de Haan et al. 2021.
    ``predict(logits)`` returns the template vertex id of each vertex.
    """

    @staticmethod
    def predict(logits: Tensor) -> Tensor:
        """``[V, num_vertices] -> [V]`` predicted template vertex ids."""
        return logits.argmax(dim=1)


class GemMeshModel(nn.Module):
    """A :class:`GemResNet` and a head, called on a ``Data``/``Batch`` with ``pos`` and ``face``.

    Shapes:
        ``data.pos [V, 3]``, ``data.face [3, T]``, ``data.x [V, in_channels]`` (when
        ``in_channels > 0``), ``data.batch [V]`` (absent: one mesh) -> logits
        ``[V, num_classes]``.
    """

    def __init__(self, backbone: GemResNet, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.task: str = head.task
        self.in_channels: int = backbone.in_channels

    def forward(self, data: object) -> Tensor:
        dtype = next(self.parameters()).dtype
        pos, x, batch, num_graphs = check_model_input(data, self.in_channels, dtype)
        face = getattr(data, "face", None)
        if face is None:
            raise InvalidInputError("data.face is missing: GEM-CNN needs a triangle mesh "
                                    "(data.face [3, T] long)")
        return self.head(self.backbone(pos, x, face, batch), batch, num_graphs)

    def loss(self, logits: Tensor, data: object) -> Tensor:
        """Cross-entropy of ``logits`` against ``data.y`` (-1 ignored), a scalar."""
        return self.head.loss(logits, data)


_WEIGHTINGS = ("uniform", "angle")


def _backbone(in_channels, width, depth, order, levels, num_samples, act, dropout,
              neighbour_weights) -> GemResNet:
    check_int(in_channels, "in_channels", 0)
    check_int(width, "width", 1)
    check_int(depth, "depth", 1)
    check_int(order, "order", 0)
    check_int(levels, "levels", 1)
    if num_samples is not None:
        check_int(num_samples, "num_samples", 2 * order + 1)
    if act not in _ACTS:
        raise InvalidInputError(f"act must be one of {sorted(_ACTS)}, got {act!r}")
    check_dropout(dropout)
    if neighbour_weights not in _WEIGHTINGS:
        raise InvalidInputError(f"neighbour_weights must be one of {_WEIGHTINGS}, got {neighbour_weights!r}")
    return GemResNet(in_channels, width, depth, order, levels, num_samples, act, neighbour_weights)


@register("gem_seg")
def gem_seg(
    *,
    in_channels: int = 0,
    num_classes: int,
    width: int = 16,
    depth: int = 1,
    order: int = 2,
    levels: int = 3,
    num_samples: Optional[int] = None,
    act: str = "silu",
    head_channels: Sequence[int] = (64,),
    dropout: float = 0.0,
    neighbour_weights: str = "uniform",
) -> GemMeshModel:
    """GEM-CNN per-vertex segmentation of triangle meshes (de Haan et al., ICLR 2021).

    Args:
        in_channels: gauge-invariant scalar features per vertex in ``data.x`` (default 0:
            none, a constant 1; e.g. 2 for :func:`geo3d.geometry.mesh.curvature_features`).
        num_classes: classes.
        width: channels of the finest level (default 16).
        depth: residual blocks per encoder level (default 1).
        order: maximal irrep order ``N`` of the hidden features (default 2).
        levels: resolutions of the U-Net (default 3).
        num_samples: angles of the regular nonlinearity (default None: ``max(32, 16(2N+1))``).
        act: ``"silu"`` (default), ``"relu"``, ``"gelu"`` or ``"tanh"``.
        head_channels: hidden widths of the per-vertex MLP head (default ``(64,)``).
        dropout: head dropout (default 0).
        neighbour_weights: ``"uniform"`` (default: the paper's mean over the one-ring) or
            ``"angle"`` (each neighbour weighted by its angular sector,
            :func:`geo3d.geometry.mesh.angular_weights`: less dependent on the
            triangulation).

    Returns:
        A :class:`GemMeshModel` with ``task == "segmentation"``; logits ``[V, num_classes]``.
    """
    check_int(num_classes, "num_classes", 1)
    head_channels = check_channels(head_channels, "head_channels", 0)
    backbone = _backbone(in_channels, width, depth, order, levels, num_samples, act, dropout,
                         neighbour_weights)
    return GemMeshModel(backbone, SegmentationHead(width, num_classes, head_channels, dropout))


@register("gem_corr")
def gem_corr(
    *,
    in_channels: int = 0,
    num_classes: int,
    width: int = 16,
    depth: int = 1,
    order: int = 2,
    levels: int = 3,
    num_samples: Optional[int] = None,
    act: str = "silu",
    head_channels: Sequence[int] = (128,),
    dropout: float = 0.0,
    neighbour_weights: str = "uniform",
) -> GemMeshModel:
    """GEM-CNN dense correspondence: per-vertex logits over ``num_classes`` template vertices.

    Same backbone and arguments as :func:`gem_seg`; the head is a
    :class:`CorrespondenceHead` (default hidden width 128).
    """
    check_int(num_classes, "num_classes", 1)
    head_channels = check_channels(head_channels, "head_channels", 0)
    backbone = _backbone(in_channels, width, depth, order, levels, num_samples, act, dropout,
                         neighbour_weights)
    return GemMeshModel(backbone, CorrespondenceHead(width, num_classes, head_channels, dropout))
