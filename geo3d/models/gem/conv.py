"""``GemConv``: the gauge-equivariant mesh convolution on PyG ``MessagePassing``.

de Haan, Weiler, Cohen and Welling, "Gauge Equivariant Mesh CNNs", ICLR 2021, eq. (2):

    f'_p = K_self f_p + mean_{q in N(p)} K(theta_pq) rho_in(g_{q->p}) f_q

with ``K = sum_b w_b K_b`` and ``K_self = sum_b w'_b K_self,b`` in the analytic bases of
:mod:`geo3d.models.gem.kernels`. The neighbour's feature is first parallel transported to
``p``'s gauge (``rho_in(g_{q->p})``). Because every basis entry is a trigonometric
polynomial of ``theta`` of degree ``L = N_in + N_out``, the sum is reordered (exactly):
the messages are the transported features times the harmonics ``cos(k theta),
sin(k theta)`` (``k <= L``), averaged per vertex, and one dense matrix built from the
weights and the basis's Fourier coefficients maps them to the output. The mean (not the
sum) keeps the scale independent of the vertex degree, which differs between
triangulations. With ``edge_weight`` (e.g. :func:`geo3d.geometry.mesh.angular_weights`,
the angular sector of each neighbour) the mean becomes that weighted sum: a quadrature of
the kernel's integral over directions that depends less on where a triangulation puts
the neighbours.

Two equal implementations of the averaging: PyG ``MessagePassing`` (``message`` builds the
per-edge products, ``aggr="mean"``; the reference, ``fused=False``) and the default fused
one, which never builds per-edge features: the products ``cos(n g) h_k(theta) / deg`` and
``sin(n g) h_k(theta) / deg`` form sparse ``[F V, V]`` CSR matrices (one pair per order
``n``) applied to the features with ``torch.sparse.mm``. Measured on the loaded 2-core
machine (one thread, a training step of the whole network on a batch of 4 meshes of
1,090 vertices, order 1, width 16): 6.0 s with per-edge messages, 3.1 s fused; the
per-edge products, their gathers and their gradients dominated the former.

Without autograd (inference) the fused path skips two costs that dominated it: the
sparse products run as ``addmm(..., beta=0, out=...)`` with int32 indices (``mat @
dense`` zero-fills and copies its operands and result: 3.8 -> 0.9 ms for a [9 x 4360,
4360] x [4360, 64] product), and the means go into one ``[F, V, D, C]`` buffer mapped by
one GEMM per harmonic instead of being concatenated and transposed to ``[V, C*D*F]``. A
``gem_seg`` forward (width 16, order 2, 3 levels, 4 meshes of 1,090 vertices, one thread)
went from 560 to 350 ms. Training keeps the autograd-friendly path.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from geo3d.models.gem.kernels import (apply_rho, feature_dim, fourier_kernel_basis, harmonics,
                                      self_interaction_basis)

__all__ = ["GemConv"]


class GemConv(MessagePassing):
    """Gauge-equivariant convolution between band-limited regular features.

    Args:
        in_channels: input channels ``C_in`` (each a feature of order ``order_in``).
        out_channels: output channels ``C_out`` (each of order ``order_out``).
        order_in: maximal irrep order ``N_in`` of the input (0: scalars).
        order_out: maximal irrep order ``N_out`` of the output.
        bias: add a learnt bias to the invariant (``rho_0``) part (default True).
        fused: average with sparse matrices (default True) instead of PyG's per-edge
            messages (same result up to rounding).

    Shapes:
        ``x [V, C_in, 2 N_in + 1], edge_index [2, E]`` (row 0 neighbour ``q``, row 1
        centre ``p``), ``theta [E]`` (angle of ``q`` in ``p``'s gauge), ``transport [E]``
        (``g_{q->p}``), optional ``edge_weight [E]`` (summing to 1 per centre; default
        ``1 / deg``) ``-> [V, C_out, 2 N_out + 1]``.
    """

    mac_category = "gem_kernel"  # geo3d.efficiency.profile counts its MACs on their own row

    def __init__(self, in_channels: int, out_channels: int, order_in: int, order_out: int,
                 bias: bool = True, fused: bool = True) -> None:
        super().__init__(aggr="mean", flow="source_to_target")
        self.fused = fused
        self.in_channels, self.out_channels = in_channels, out_channels
        self.order_in, self.order_out = order_in, order_out
        self.degree = order_in + order_out
        basis = fourier_kernel_basis(order_in, order_out, torch.get_default_dtype())
        self_basis = self_interaction_basis(order_in, order_out, torch.get_default_dtype())
        self.register_buffer("basis", basis, persistent=False)  # [B, Do, Di, F]
        self.register_buffer("self_basis", self_basis, persistent=False)  # [Bs, Do, Di]
        fan_in = in_channels * feature_dim(order_in)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, basis.shape[0])
                                   / math.sqrt(fan_in))
        self.self_weight = nn.Parameter(torch.randn(out_channels, in_channels, self_basis.shape[0])
                                        / math.sqrt(fan_in))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def kernel_matrices(self) -> tuple[Tensor, Tensor]:
        """The dense maps ``[C_out*D_out, C_in*D_in*F]`` (neighbours) and ``[C_out*D_out, C_in*D_in]``."""
        w = torch.einsum("oib,bdef->odief", self.weight, self.basis)
        ws = torch.einsum("oib,bde->odie", self.self_weight, self.self_basis)
        return w.reshape(w.shape[0] * w.shape[1], -1), ws.reshape(ws.shape[0] * ws.shape[1], -1)

    def forward(self, x: Tensor, edge_index: Tensor, theta: Tensor, transport: Tensor,
                edge_weight: Optional[Tensor] = None) -> Tensor:
        v = x.shape[0]
        if self.fused and not torch.is_grad_enabled():
            return self._fused_inference(x, edge_index, theta, transport, edge_weight)
        if self.fused:
            agg = torch.cat(self._harmonic_means(x, edge_index, theta, transport, edge_weight), -1)
            agg = agg.permute(1, 2, 3, 0).reshape(v, -1)  # [V, C*D*F]
        else:  # PyG averages: scale each message by its weight times the degree
            scale = None
            if edge_weight is not None:
                deg = torch.bincount(edge_index[1], minlength=v).to(x.dtype)
                scale = edge_weight * deg[edge_index[1]]
            agg = self.propagate(edge_index, x=x.reshape(v, -1), theta=theta, transport=transport,
                                 scale=scale, size=(v, v))
        w, ws = self.kernel_matrices()
        out = (agg @ w.T + x.reshape(v, -1) @ ws.T).view(v, self.out_channels, -1)
        if self.bias is not None:
            out = torch.cat([out[..., :1] + self.bias[:, None], out[..., 1:]], dim=-1)
        return out

    def _fused_inference(self, x: Tensor, edge_index: Tensor, theta: Tensor, transport: Tensor,
                         edge_weight: Optional[Tensor]) -> Tensor:
        """The fused forward without autograd: the harmonic means are written into one
        ``[F, V, D, C]`` buffer (channels innermost, so every write is contiguous) and
        mapped by one GEMM per harmonic; the ``[V, C*D*F]`` concatenation and transpose of
        the training path are never built. With autograd the in-place writes made training
        slower, so it keeps the other path."""
        v, c, d = x.shape
        agg = x.new_empty(2 * self.degree + 1, v, d, c)
        self._harmonic_means(x, edge_index, theta, transport, edge_weight, out=agg)
        w = torch.einsum("oib,bdef->feiod", self.weight, self.basis)  # [F, D_in, C_in, C_out, D_out]
        w = w.reshape(w.shape[0], d * c, -1)
        ws = torch.einsum("oib,bde->ieod", self.self_weight, self.self_basis).reshape(c * d, -1)
        out = x.reshape(v, -1) @ ws
        for k in range(agg.shape[0]):  # addmm, not addmm_: the MAC counter knows addmm
            out = torch.addmm(out, agg[k].view(v, d * c), w[k])
        out = out.view(v, self.out_channels, -1)
        if self.bias is not None:
            out[..., 0] += self.bias
        return out

    def _harmonic_means(self, x: Tensor, edge_index: Tensor, theta: Tensor, transport: Tensor,
                        edge_weight: Optional[Tensor], out: Optional[Tensor] = None) -> list:
        """Per order ``n``: ``[F, V, C, D_n]`` weighted means over the neighbours of the
        transported features times each harmonic ``h_k(theta)`` (``D_0 = 1``, else 2);
        with ``out`` (``[F, V, D, C]``) they are written into it instead (no autograd)."""
        v, c, d = x.shape
        q, p = edge_index
        if q.numel() > 1 and not bool((p[1:] >= p[:-1]).all()):
            order = torch.argsort(p, stable=True)
            q, p, theta, transport = q[order], p[order], theta[order], transport[order]
            edge_weight = None if edge_weight is None else edge_weight[order]
        e = q.shape[0]
        counts = torch.bincount(p, minlength=v)
        if edge_weight is None:
            edge_weight = 1.0 / counts[p].clamp_min(1).to(x.dtype)
        h = harmonics(theta, self.degree) * edge_weight[:, None].to(x.dtype)  # [E, F]
        f = h.shape[1]
        crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        crow = torch.cat([crow[:-1] + k * e for k in range(f)] + [crow[-1:] + (f - 1) * e])
        col = q.repeat(f)

        into_buffer = out is not None and x.device.type == "cpu"  # addmm(out=) below
        if into_buffer:
            crow, col = crow.int(), col.int()  # what the CPU kernel takes (no per-call copy)

        def spmm(values: Tensor, dense: Tensor) -> Tensor:  # [E, F] weights x [V, K] -> [F, V, K]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mat = torch.sparse_csr_tensor(crow, col, values.T.reshape(-1), (f * v, v),
                                              dtype=x.dtype, device=x.device)
            if not into_buffer:
                return (mat @ dense).view(f, v, *dense.shape[1:])
            # no autograd: addmm into a fresh buffer skips the zero fill and layout copies
            # of ``mat @ dense`` (4.4x faster on [9 x 4360, 4360] x [4360, 64] here)
            buf = dense.new_empty(f * v, dense.shape[1])
            return torch.addmm(buf, mat, dense, beta=0, out=buf).view(f, v, *dense.shape[1:])

        if out is not None:  # [F, V, D, C]: the pair of order n as two channel blocks
            out[:, :, 0] = spmm(h, x[:, :, 0]).view(f, v, c)
            for n in range(1, self.order_in + 1):
                xn = x[:, :, 2 * n - 1:2 * n + 1].transpose(1, 2).reshape(v, 2 * c)
                yc = spmm(h * torch.cos(n * transport)[:, None], xn).view(f, v, 2, c)
                ys = spmm(h * torch.sin(n * transport)[:, None], xn).view(f, v, 2, c)
                torch.sub(yc[:, :, 0], ys[:, :, 1], out=out[:, :, 2 * n - 1])
                torch.add(ys[:, :, 0], yc[:, :, 1], out=out[:, :, 2 * n])
            return [out]
        parts = [spmm(h, x[:, :, 0])[..., None]]  # [F, V, C, 1]
        for n in range(1, self.order_in + 1):
            xn = x[:, :, 2 * n - 1:2 * n + 1].reshape(v, 2 * c)
            yc = spmm(h * torch.cos(n * transport)[:, None], xn).view(f, v, c, 2)
            ys = spmm(h * torch.sin(n * transport)[:, None], xn).view(f, v, c, 2)
            parts.append(torch.stack([yc[..., 0] - ys[..., 1], ys[..., 0] + yc[..., 1]], -1))
        return parts

    def message(self, x_j: Tensor, theta: Tensor, transport: Tensor,
                scale: Optional[Tensor]) -> Tensor:
        xt = apply_rho(x_j.view(x_j.shape[0], self.in_channels, -1), transport, self.order_in)
        h = harmonics(theta, self.degree)  # [E, F]
        if scale is not None:
            h = h * scale[:, None]
        return (xt[..., None] * h[:, None, None, :]).flatten(1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}x(order {self.order_in}) -> {self.out_channels}x"
                f"(order {self.order_out}), {self.weight.shape[-1]} kernel bases")
