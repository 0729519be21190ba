"""An E(3)-equivariant point-cloud network (tensor-field / NequIP style) on e3nn.

e3nn does the group theory: spherical harmonics of the edge vectors, the tensor products
whose weights come from a radial MLP, the gated nonlinearities and the equivariant linear
layers (``e3nn.o3`` / ``e3nn.nn``). The graph is ``geo3d.geometry.radius_graph`` (exact,
no torch-cluster); messages are summed with ``torch_geometric.utils.scatter``.

One interaction layer, for node features ``h_i`` (a direct sum of irreps):

    m_ij = TP_{w(|r_ij|)}(Lin1(h_j), Y(r_ij / |r_ij|)) * u(|r_ij|),  r_ij = pos_j - pos_i
    h_i' = Gate(Lin2(sum_j m_ij / sqrt(avg_num_neighbors)) + SelfLin(h_i)) (+ h_i)

``Y`` are the real spherical harmonics up to ``lmax``, ``w`` a radial MLP on a Gaussian
basis of ``|r_ij|``, ``u(d) = soft_unit_step(10 (1 - d / radius))`` a C-infinity cutoff
(so an edge that appears or vanishes at the radius under a rotation carries no weight),
``TP`` a channel-wise ("uvu") tensor product with per-edge weights (``shared_weights=False``)
and ``Gate`` e3nn's gated nonlinearity (SiLU on ``0e``, tanh on ``0o``, sigmoid gates on
``l > 0``). Hidden irreps hold both parities of every ``l <= lmax`` so reflections are
represented; positions enter only through ``r_ij`` (translation invariance). The heads read
the ``0e`` channels only, so logits are E(3)-invariant, and :meth:`features` returns the
equivariant irreps tensor (``irreps_out``, vectors ``1o`` included).

Exactness: with ``max_num_neighbors=None`` (the default) the graph depends on distances
only, so the network is equivariant to floating-point precision. A neighbour cap keeps
the nearest neighbours, which is equivariant except when a rotation reorders near-equal
distances at the cap.

References:
    Thomas et al., "Tensor field networks", arXiv:1802.08219 (2018).
    Batzner et al., "E(3)-equivariant graph neural networks for data-efficient and
    accurate interatomic potentials" (NequIP), Nat. Commun. 13, 2453 (2022).
    Geiger & Smidt, "e3nn: Euclidean Neural Networks", arXiv:2207.09453 (2022).
"""

from __future__ import annotations

import copy
import math
import re
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from e3nn import nn as enn
from e3nn import o3
from e3nn.math import soft_one_hot_linspace, soft_unit_step
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from geo3d.errors import InvalidInputError
from geo3d.geometry import radius_graph
from geo3d.geometry.validation import check_positive
from geo3d.models._layers import check_model_input
from geo3d.models.registry import register

__all__ = [
    "hidden_irreps",
    "EquivariantConv",
    "EquivariantBackbone",
    "EquivariantClassifier",
    "EquivariantSegmenter",
    "equivariant_cls",
    "equivariant_seg",
]

_SCALAR = o3.Irrep("0e")
_W3J = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)$")


def hidden_irreps(width: int, lmax: int) -> o3.Irreps:
    """The hidden irreps: ``max(1, width // 2**l)`` copies of ``l`` with each parity.

    Args:
        width: multiplicity of the scalars (``0e`` and ``0o``), ``>= 1``.
        lmax: highest degree, ``>= 0``.

    Returns:
        e.g. ``width=16, lmax=2``: ``16x0e+16x0o+8x1o+8x1e+4x2e+4x2o``.
    """
    width, lmax = _int(width, "width", 1), _int(lmax, "lmax", 0)
    return o3.Irreps(
        [(max(1, width >> l), (l, p)) for l in range(lmax + 1) for p in ((-1) ** l, -((-1) ** l))]
    )


class EquivariantConv(nn.Module):
    """One interaction layer: radial-weighted tensor-product messages, sum, gate, residual.

    Args:
        irreps_in: irreps of the input node features.
        irreps_hidden: irreps of the output node features (after the gate).
        irreps_sh: irreps of the edge spherical harmonics.
        num_basis: size of the radial basis fed to the radial MLP.
        radial_hidden: width of the radial MLP's two hidden layers.
        avg_num_neighbors: the summed messages are divided by its square root.

    Shapes:
        forward(h [N, irreps_in.dim], sh [E, irreps_sh.dim], basis [E, num_basis],
        cutoff [E], edge_index [2, E]) -> [N, irreps_out.dim].
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_hidden: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_basis: int,
        radial_hidden: int,
        avg_num_neighbors: float,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        irreps_hidden, irreps_sh = o3.Irreps(irreps_hidden), o3.Irreps(irreps_sh)
        self.norm = 1.0 / math.sqrt(avg_num_neighbors)

        scalars = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l > 0])
        acts = [F.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        self.gate = enn.Gate(scalars, acts, f"{gated.num_irreps}x0e", [torch.sigmoid], gated)
        self.irreps_out = self.gate.irreps_out

        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in irreps_hidden:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid, perm, _ = o3.Irreps(mid).sort()
        instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]

        self.lin_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tp = o3.TensorProduct(
            self.irreps_in,
            irreps_sh,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.radial = enn.FullyConnectedNet(
            [num_basis, radial_hidden, radial_hidden, self.tp.weight_numel], F.silu
        )
        self.lin_out = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.Linear(self.irreps_in, self.gate.irreps_in)
        self.residual = self.irreps_in == self.irreps_out
        self.register_load_state_dict_post_hook(_exact_wigner_3j_hook)

    def _apply(self, fn, recurse=True):
        # e3nn stores its Wigner 3j constants as buffers made in the default dtype: after
        # model.double() they would only be float32-accurate, and so would equivariance.
        out = super()._apply(fn, recurse)
        self._exact_wigner_3j()
        return out

    @torch.no_grad()
    def _exact_wigner_3j(self) -> None:
        """Recompute e3nn's ``_w3j_l1_l2_l3`` buffers in float64, then cast to their dtype."""
        for name, buf in self.tp.named_buffers():
            match = _W3J.search(name)
            if match and buf.is_floating_point():
                exact = o3.wigner_3j(*map(int, match.groups()), dtype=torch.float64)
                buf.copy_(exact.to(device=buf.device, dtype=buf.dtype))

    def forward(
        self,
        h: torch.Tensor,
        sh: torch.Tensor,
        basis: torch.Tensor,
        cutoff: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        src, dst = edge_index[0], edge_index[1]
        weight = self.radial(basis) * cutoff[:, None]
        messages = self.tp(self.lin_in(h)[src], sh, weight)
        agg = scatter(messages, dst, dim=0, dim_size=h.shape[0], reduce="sum") * self.norm
        out = self.gate(self.lin_out(agg) + self.self_connection(h))
        return out + h if self.residual else out


class EquivariantBackbone(nn.Module):
    """E(3)-equivariant per-point features from ``pos`` (and invariant features ``x``).

    Args:
        in_channels: width of ``data.x``, read as ``in_channels x 0e`` (invariant scalars);
            0 (default) uses positions only.
        lmax: highest spherical-harmonic degree of edges and hidden features (default 2).
        width: multiplicity of the hidden scalars; degree ``l`` gets ``width // 2**l``
            (default 16), see :func:`hidden_irreps`.
        depth: interaction layers (default 3).
        radius: neighbourhood radius in metres (default 0.2); the radial cutoff is smooth.
        num_basis: Gaussian radial basis functions on ``[0, radius]`` (default 8).
        radial_hidden: width of the radial MLPs (default 32).
        max_num_neighbors: keep at most this many nearest neighbours per point (default
            ``None``: all, exactly equivariant; see the module docstring).
        avg_num_neighbors: normaliser of the summed messages (default 16.0).

    Shapes:
        forward(data) -> ``[N, irreps_out.dim]`` (``data.pos`` [N, 3], ``data.x``
        [N, in_channels], ``data.batch`` [N]). ``scalar_index`` picks the ``0e`` columns.
    """

    def __init__(
        self,
        *,
        in_channels: int = 0,
        lmax: int = 2,
        width: int = 16,
        depth: int = 3,
        radius: float = 0.2,
        num_basis: int = 8,
        radial_hidden: int = 32,
        max_num_neighbors: Optional[int] = None,
        avg_num_neighbors: float = 16.0,
    ) -> None:
        super().__init__()
        self.in_channels = _int(in_channels, "in_channels", 0)
        self.lmax = _int(lmax, "lmax", 0)
        depth = _int(depth, "depth", 1)
        self.num_basis = _int(num_basis, "num_basis", 2)
        radial_hidden = _int(radial_hidden, "radial_hidden", 1)
        check_positive(radius, "radius")
        check_positive(avg_num_neighbors, "avg_num_neighbors")
        self.radius = float(radius)
        self.max_num_neighbors = (
            None if max_num_neighbors is None else _int(max_num_neighbors, "max_num_neighbors", 1)
        )

        self.irreps_in = o3.Irreps(f"{1 + self.in_channels}x0e")  # a constant 1, then x
        self.irreps_sh = o3.Irreps.spherical_harmonics(self.lmax)
        hidden = hidden_irreps(width, self.lmax)
        layers, irreps = [], self.irreps_in
        for _ in range(depth):
            layer = EquivariantConv(
                irreps, hidden, self.irreps_sh, self.num_basis, radial_hidden, avg_num_neighbors
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self._set_irreps_out(irreps)

    def _set_irreps_out(self, irreps: o3.Irreps, device: Optional[torch.device] = None) -> None:
        """Set ``irreps_out`` and what is read from it: ``scalar_index``, ``num_scalars``."""
        self.irreps_out: o3.Irreps = irreps
        scalar_cols = [
            i
            for (_, ir), sl in zip(irreps, irreps.slices())
            if ir == _SCALAR
            for i in range(sl.start, sl.stop)
        ]
        index = torch.tensor(scalar_cols, dtype=torch.long, device=device)
        self.register_buffer("scalar_index", index)
        self.num_scalars = len(scalar_cols)

    def forward(self, data: Data) -> torch.Tensor:
        pos, x, batch = _inputs(data, self.in_channels, _dtype(self))
        return self._features(pos, x, batch)

    def _features(
        self, pos: torch.Tensor, x: Optional[torch.Tensor], batch: Optional[torch.Tensor]
    ) -> torch.Tensor:
        edge_index = radius_graph(pos, self.radius, batch, max_num_neighbors=self.max_num_neighbors)
        vec = pos[edge_index[0]] - pos[edge_index[1]]  # r_ij = pos_j - pos_i
        length = vec.norm(dim=1)
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        basis = soft_one_hot_linspace(
            length, 0.0, self.radius, self.num_basis, basis="gaussian", cutoff=False
        ).mul(self.num_basis**0.5)
        cutoff = soft_unit_step(10.0 * (1.0 - length / self.radius))
        h = pos.new_ones(pos.shape[0], 1)
        if x is not None:
            h = torch.cat([h, x], dim=1)
        for layer in self.layers:
            h = layer(h, sh, basis, cutoff, edge_index)
        return h


class _EquivariantModel(nn.Module):
    """Backbone + an MLP head on the invariant ``0e`` features; owns ``task`` and ``loss``."""

    task: str = ""
    context: int = 1  # the head reads context * num_scalars features

    def __init__(self, backbone: EquivariantBackbone, num_classes: int, head_hidden: int) -> None:
        super().__init__()
        num_classes = _int(num_classes, "num_classes", 1)
        head_hidden = _int(head_hidden, "head_hidden", 1)
        self.backbone = backbone
        self.num_classes = num_classes
        self.head = nn.Sequential(
            nn.Linear(self.context * backbone.num_scalars, head_hidden),
            nn.SiLU(),
            nn.Linear(head_hidden, num_classes),
        )

    @property
    def irreps_out(self) -> o3.Irreps:
        """Irreps of :meth:`features` (the backbone's output)."""
        return self.backbone.irreps_out

    def features(self, data: Data) -> torch.Tensor:
        """The equivariant per-point features ``[N, irreps_out.dim]`` (e3nn layout)."""
        return self.backbone(data)

    def forward(self, data: Data) -> torch.Tensor:
        pos, x, batch = _inputs(data, self.backbone.in_channels, _dtype(self))
        scalars = self.backbone._features(pos, x, batch)[:, self.backbone.scalar_index]
        return self._head(scalars, batch, data)

    def _head(
        self, scalars: torch.Tensor, batch: Optional[torch.Tensor], data: Data
    ) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, data: Data) -> torch.Tensor:
        """Cross-entropy of ``logits`` against ``data.y`` (``ignore_index=-1``).

        Returns 0 (with a graph to ``logits``) when every label is ignored.
        """
        y = getattr(data, "y", None)
        if not isinstance(y, torch.Tensor):
            raise InvalidInputError("data.y is missing: the loss needs labels")
        y = y.reshape(-1)
        if y.is_floating_point() or y.dtype == torch.bool:
            raise InvalidInputError(f"data.y must be an integer tensor, got {y.dtype}")
        if logits.dim() != 2 or logits.shape[0] != y.shape[0]:
            unit = "points" if self.task == "segmentation" else "graphs"
            raise InvalidInputError(
                f"data.y must have one label per row of logits ({logits.shape[0]} {unit}), "
                f"got shape {list(data.y.shape)}"
            )
        y = y.to(logits.device)
        if bool(((y < -1) | (y >= logits.shape[1])).any()):
            raise InvalidInputError(f"data.y must lie in -1..{logits.shape[1] - 1}")
        if not bool((y >= 0).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits, y, ignore_index=-1)


class EquivariantClassifier(_EquivariantModel):
    """Invariant logits per graph: mean of the ``0e`` features per graph, then an MLP.

    Shapes:
        forward(data) -> ``[num_graphs, num_classes]``.
    """

    task = "classification"

    def _head(self, scalars, batch, data):
        if batch is None:
            return self.head(scalars.mean(dim=0, keepdim=True))
        num_graphs = int(data.num_graphs) if isinstance(data, Batch) else int(batch.max()) + 1
        pooled = scatter(scalars, batch, dim=0, dim_size=num_graphs, reduce="mean")
        return self.head(pooled)


class EquivariantSegmenter(_EquivariantModel):
    """Invariant logits per point: an MLP on each point's ``0e`` features, its cloud's max
    and its cloud's mean of them (a global context, as in PointNet and DGCNN: the layers
    see only ``depth * radius``, while part labels depend on the whole shape). Pooled
    invariants are invariant, so the logits stay E(3)-invariant.

    Shapes:
        forward(data) -> ``[N, num_classes]``.
    """

    task = "segmentation"
    context = 3  # the head reads [own, max, mean] scalars

    def _head(self, scalars, batch, data):
        if batch is None:  # one cloud
            batch, num_graphs = scalars.new_zeros(scalars.shape[0], dtype=torch.long), 1
        else:
            num_graphs = int(data.num_graphs) if isinstance(data, Batch) else int(batch.max()) + 1
        pooled = torch.cat([scatter(scalars, batch, 0, dim_size=num_graphs, reduce=r)
                            for r in ("max", "mean")], 1)
        return self.head(torch.cat([scalars, pooled[batch]], 1))


def _build(model_cls, kwargs: dict):
    """Build ``model_cls`` from a factory's keyword arguments (its ``locals()``)."""
    kwargs = dict(kwargs)
    num_classes = _int(kwargs.pop("num_classes"), "num_classes", 1)
    head_hidden = _int(kwargs.pop("head_hidden"), "head_hidden", 1)
    return model_cls(EquivariantBackbone(**kwargs), num_classes, head_hidden)


@register("equivariant_cls")
def equivariant_cls(
    *,
    in_channels: int = 0,
    num_classes: int,
    lmax: int = 2,
    width: int = 16,
    depth: int = 3,
    radius: float = 0.2,
    num_basis: int = 8,
    radial_hidden: int = 32,
    max_num_neighbors: Optional[int] = None,
    avg_num_neighbors: float = 16.0,
    head_hidden: int = 64,
) -> EquivariantClassifier:
    """E(3)-invariant point-cloud classifier (see :class:`EquivariantBackbone` for Args).

    Args:
        num_classes: number of classes (logit columns).
        head_hidden: hidden width of the head MLP (default 64).
    """
    return _build(EquivariantClassifier, locals())


@register("equivariant_seg")
def equivariant_seg(
    *,
    in_channels: int = 0,
    num_classes: int,
    lmax: int = 2,
    width: int = 16,
    depth: int = 3,
    radius: float = 0.2,
    num_basis: int = 8,
    radial_hidden: int = 32,
    max_num_neighbors: Optional[int] = None,
    avg_num_neighbors: float = 16.0,
    head_hidden: int = 64,
) -> EquivariantSegmenter:
    """E(3)-invariant per-point segmenter (see :class:`EquivariantBackbone` for Args).

    Args:
        num_classes: number of classes (logit columns).
        head_hidden: hidden width of the head MLP (default 64).
    """
    return _build(EquivariantSegmenter, locals())


# --------------------------------------------------------------------------- helpers


def _exact_wigner_3j_hook(module: EquivariantConv, _keys: object) -> None:
    """Load-state-dict post hook of :class:`EquivariantConv` (a module-level function, not a
    lambda, so that the models pickle: ``torch.save(model)``, ``copy.deepcopy``)."""
    module._exact_wigner_3j()


def _int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def _inputs(
    data: Data, in_channels: int, dtype: torch.dtype
) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Check ``data`` (the shared model-input check); return ``(pos, x or None, batch or None)``.

    Unlike the other models, floating ``x`` of another dtype is cast to the model's dtype.
    """
    if not isinstance(data, Data):
        raise InvalidInputError(
            f"data must be a torch_geometric Data or Batch, got {type(data).__name__}"
        )
    x = getattr(data, "x", None) if in_channels else None
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype:
        data = copy.copy(data)  # shallow: the caller's Data keeps its x
        data.x = x.to(dtype)
    pos, x, batch, _ = check_model_input(data, in_channels, dtype)
    return pos, x, (batch if getattr(data, "batch", None) is not None else None)
