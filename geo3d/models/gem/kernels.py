"""The analytic gauge-equivariant kernel basis of GEM-CNN, and the irreps of SO(2).

Our own code (no library implements it for torch 2.13; e2cnn/escnn solve the planar
steerable constraint, not the gauge one with transport). de Haan, Weiler, Cohen and
Welling, "Gauge Equivariant Mesh CNNs", ICLR 2021, section 3 and table 1.

Features are direct sums of the real irreps of SO(2): ``rho_0`` (1-dim, trivial) and
``rho_n(g) = R(n g)`` (2-dim rotation by ``n g``). A feature of order ``N`` is the
``2N + 1`` vector ``[a_0, a_1c, a_1s, ..., a_Nc, a_Ns]`` transforming by
``rho(g) = rho_0 + rho_1(g) + ... + rho_N(g)``: the band-limited regular representation,
i.e. the Fourier coefficients of a function of the angle.

A kernel ``K(theta)`` from order ``N_in`` to ``N_out`` is gauge equivariant when

    K(theta - g) = rho_out(-g) K(theta) rho_in(g)   for all g, theta.

Its solutions, block by block (``n`` in, ``m`` out, ``J = R(pi/2)``, ``F = diag(1, -1)``):

* ``0 -> 0``: ``1``;
* ``n -> 0``: the rows ``e_k^T R(-n theta)``, ``k = 1, 2``;
* ``0 -> m``: the columns ``R(m theta) e_k``;
* ``n -> m``: ``R((m - n) theta)``, ``R((m - n) theta) J``, ``R((m + n) theta) F``,
  ``R((m + n) theta) F J``.

The self-interaction ``K_self`` (no angle) solves ``K = rho_out(-g) K rho_in(g)``: ``1``
for ``0 -> 0`` and ``I``, ``J`` for ``n -> n``.

Every entry of ``K(theta)`` is a trigonometric polynomial of degree ``<= N_in + N_out``,
so the basis is stored by its Fourier coefficients (:func:`fourier_kernel_basis`): the
convolution then sums the neighbours' features times ``cos(k theta), sin(k theta)``
first and applies one dense matrix per vertex (see :mod:`geo3d.models.gem.conv`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["feature_dim", "rho", "apply_rho", "kernel_basis", "self_interaction_basis",
           "harmonics", "fourier_kernel_basis"]


def feature_dim(order: int) -> int:
    """Width ``2 N + 1`` of one band-limited regular feature of order ``N``."""
    return 2 * order + 1


def _rot(a: Tensor) -> Tensor:
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def rho(angle: Tensor, order: int) -> Tensor:
    """The matrices ``rho_0 + ... + rho_N`` at ``angle``: ``[*, 2N+1, 2N+1]``."""
    d = feature_dim(order)
    out = torch.zeros(*angle.shape, d, d, dtype=angle.dtype, device=angle.device)
    out[..., 0, 0] = 1
    for n in range(1, order + 1):
        out[..., 2 * n - 1:2 * n + 1, 2 * n - 1:2 * n + 1] = _rot(n * angle)
    return out


def apply_rho(x: Tensor, angle: Tensor, order: int) -> Tensor:
    """``rho(angle) x`` without building matrices.

    Shapes:
        ``x [E, C, 2N+1], angle [E] -> [E, C, 2N+1]``.
    """
    if order == 0:
        return x
    n = torch.arange(1, order + 1, dtype=angle.dtype, device=angle.device)
    c, s = torch.cos(angle[:, None] * n)[:, None], torch.sin(angle[:, None] * n)[:, None]  # [E,1,N]
    xc, xs = x[..., 1::2], x[..., 2::2]
    rc, rs = c * xc - s * xs, s * xc + c * xs
    return torch.cat([x[..., :1], torch.stack([rc, rs], -1).flatten(-2)], dim=-1)


def _block(order: int, n: int) -> slice:
    return slice(0, 1) if n == 0 else slice(2 * n - 1, 2 * n + 1)


def kernel_basis(theta: Tensor, order_in: int, order_out: int) -> Tensor:
    """The analytic equivariant kernel basis at angles ``theta``.

    Returns:
        ``[*, B, 2 N_out + 1, 2 N_in + 1]``; ``B`` = 1 (for ``0 -> 0``) + 2 per pair with one
        order 0 + 4 per pair of non-zero orders.
    """
    J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=theta.dtype, device=theta.device)
    F = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=theta.dtype, device=theta.device)
    d_in, d_out = feature_dim(order_in), feature_dim(order_out)
    mats = []
    for m in range(order_out + 1):
        for n in range(order_in + 1):
            blocks = []
            if n == 0 and m == 0:
                blocks.append(torch.ones(*theta.shape, 1, 1, dtype=theta.dtype, device=theta.device))
            elif m == 0:
                r = _rot(-n * theta)
                blocks += [r[..., 0:1, :], r[..., 1:2, :]]
            elif n == 0:
                r = _rot(m * theta)
                blocks += [r[..., :, 0:1], r[..., :, 1:2]]
            else:
                a, b = _rot((m - n) * theta), _rot((m + n) * theta) @ F
                blocks += [a, a @ J, b, b @ J]
            for blk in blocks:
                full = torch.zeros(*theta.shape, d_out, d_in, dtype=theta.dtype, device=theta.device)
                full[..., _block(order_out, m), _block(order_in, n)] = blk
                mats.append(full)
    return torch.stack(mats, dim=-3)


def self_interaction_basis(order_in: int, order_out: int, dtype=torch.float64) -> Tensor:
    """The angle-free equivariant maps: ``[B_self, 2 N_out + 1, 2 N_in + 1]``."""
    d_in, d_out = feature_dim(order_in), feature_dim(order_out)
    mats = []
    for n in range(min(order_in, order_out) + 1):
        pieces = [torch.ones(1, 1)] if n == 0 else [torch.eye(2), torch.tensor([[0.0, -1.0], [1.0, 0.0]])]
        for blk in pieces:
            full = torch.zeros(d_out, d_in)
            full[_block(order_out, n), _block(order_in, n)] = blk
            mats.append(full)
    return torch.stack(mats).to(dtype)


def harmonics(theta: Tensor, degree: int) -> Tensor:
    """``[1, cos t, sin t, ..., cos(L t), sin(L t)]`` at ``theta``: ``[*, 2L+1]``."""
    k = torch.arange(1, degree + 1, dtype=theta.dtype, device=theta.device)
    kt = theta[..., None] * k
    return torch.cat([torch.ones_like(theta)[..., None],
                      torch.stack([torch.cos(kt), torch.sin(kt)], -1).flatten(-2)], dim=-1)


@lru_cache(maxsize=None)
def _fourier_basis64(order_in: int, order_out: int) -> Tensor:
    degree = order_in + order_out
    samples = 4 * degree + 4
    theta = torch.arange(samples, dtype=torch.float64) * (2 * math.pi / samples)
    values = kernel_basis(theta, order_in, order_out)  # [S, B, Do, Di]
    phi = harmonics(theta, degree)  # [S, F]
    coeffs = torch.linalg.lstsq(phi, values.reshape(samples, -1)).solution  # [F, B*Do*Di]
    coeffs = torch.where(coeffs.abs() < 1e-12, torch.zeros_like(coeffs), coeffs)
    return coeffs.T.reshape(*values.shape[1:], phi.shape[1]).contiguous()


def fourier_kernel_basis(order_in: int, order_out: int, dtype=torch.float64) -> Tensor:
    """Fourier coefficients of :func:`kernel_basis`: ``[B, 2N_out+1, 2N_in+1, 2L+1]``.

    ``kernel_basis(theta) == fourier_kernel_basis() @ harmonics(theta, L)`` with
    ``L = N_in + N_out`` (exact: the entries are trigonometric polynomials of degree L).
    """
    return _fourier_basis64(order_in, order_out).to(dtype)
