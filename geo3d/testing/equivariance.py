"""``assert_equivariant``: check a function of a point cloud under O(3) and translations.

The representation matrices come from e3nn's irreps (``e3nn.o3.Irreps``) and its real
spherical harmonics. We do not call ``Irreps.D_from_matrix`` directly: e3nn 0.6 builds its
Lie-algebra generators in the *default* dtype, so with float32 as the default a float64
``D_from_matrix`` is only accurate to ~1e-7, too coarse to check float64 models to 1e-9.
Instead :func:`wigner_d_from_matrix` solves ``Y(R x) = D Y(x)`` by least squares in
float64 on e3nn's own spherical harmonics, which is exact to ~1e-14 and uses e3nn's basis
and conventions (``1o`` is ``(x, y, z)``; a reflection multiplies ``D`` by the parity).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from e3nn import o3
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_points

__all__ = ["assert_equivariant", "random_orthogonal", "wigner_d_from_matrix"]

IrrepsLike = Union[str, o3.Irreps]

_DEFAULT_TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2}
_GROUPS = ("O3", "SO3")


def random_orthogonal(generator: torch.Generator, det: int = 1) -> torch.Tensor:
    """A Haar-random 3x3 float64 orthogonal matrix with determinant ``det`` (+1 or -1)."""
    a = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) * det < 0:
        q = -q  # in 3D, -Q flips the determinant
    return q


def wigner_d_from_matrix(irreps: IrrepsLike, matrix: torch.Tensor) -> torch.Tensor:
    """The float64 representation matrix of ``irreps`` for an orthogonal 3x3 ``matrix``.

    Same result as ``o3.Irreps(irreps).D_from_matrix(matrix)`` (e3nn's basis and parity
    convention) but float64-accurate whatever the default dtype (see the module docstring).

    Args:
        irreps: e3nn irreps, e.g. ``"4x0e+2x1o"``.
        matrix: ``[3, 3]`` orthogonal matrix (rotation or improper rotation).

    Returns:
        ``[irreps.dim, irreps.dim]`` float64 block-diagonal matrix.
    """
    irreps = _irreps(irreps, "irreps")
    r = matrix.to(torch.float64)
    det = 1.0 if float(torch.det(r)) > 0 else -1.0
    proper = r * det
    gen = torch.Generator().manual_seed(12345)
    samples = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    blocks = []
    cache: dict = {}
    for mul, ir in irreps:
        if ir.l not in cache:
            if ir.l == 0:
                cache[ir.l] = torch.ones(1, 1, dtype=torch.float64)
            else:
                y = o3.spherical_harmonics(ir.l, samples, normalize=True)
                y_rot = o3.spherical_harmonics(ir.l, samples @ proper.T, normalize=True)
                cache[ir.l] = torch.linalg.lstsq(y, y_rot).solution.T  # y_rot = y @ D^T
        d = cache[ir.l] * (ir.p if det < 0 else 1)
        blocks.extend([d] * mul)
    if not blocks:
        return torch.zeros(0, 0, dtype=torch.float64)
    return torch.block_diag(*blocks)


def assert_equivariant(
    fn: Callable[[Data], torch.Tensor],
    data: Data,
    *,
    irreps_out: Optional[IrrepsLike] = None,
    irreps_in: Optional[IrrepsLike] = None,
    group: str = "O3",
    translate: bool = True,
    trials: int = 3,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    seed: int = 0,
) -> float:
    """Check that ``fn(data)`` transforms under ``irreps_out`` when ``data.pos`` is moved.

    Each trial draws a random orthogonal matrix ``R`` and translation ``t``, builds a copy
    of ``data`` with ``pos' = pos @ R.T + t`` (computed in float64, stored in ``pos``'s
    dtype) and ``x' = x @ D_in(R).T`` when ``irreps_in`` is given, and checks
    ``fn(data') == fn(data) @ D_out(R).T`` where ``D_out`` is the representation of
    ``irreps_out`` (identity when ``irreps_out`` is None: invariant outputs). With
    ``group="O3"`` even trials use reflections (det -1) and odd trials rotations, so one
    trial already checks a reflection; ``group="SO3"`` uses rotations only. Other
    attributes of ``data`` (boxes, normals outside ``x``...) are passed unchanged.

    The check passes when ``max |fn(data') - expected| <= atol + rtol * max |fn(data)|``:
    an absolute floor plus a tolerance relative to the output's magnitude. Both default to
    the output dtype's tolerance: 1e-9 for float64, 1e-4 for float32, 1e-2 for half types.

    ``fn`` always gets copies: ``data`` is never mutated (even by a mutating ``fn``).

    Args:
        fn: maps a ``Data``/``Batch`` to a tensor; with ``irreps_out`` its last dimension
            must be ``irreps_out.dim``.
        data: the input; ``data.pos`` ``[N, 3]`` floating.
        irreps_out: e3nn irreps of the output's last dimension (default None: invariant).
        irreps_in: e3nn irreps of ``data.x`` (default None: ``x`` is invariant).
        group: ``"O3"`` (default, with reflections) or ``"SO3"``.
        translate: add a random translation too (default True).
        trials: number of random transformations (default 3).
        atol: absolute tolerance (default: per dtype, see above).
        rtol: tolerance relative to ``max |fn(data)|`` (default: per dtype).
        seed: seed of the random transformations (default 0).

    Returns:
        The largest error seen (float), for information.

    Raises:
        AssertionError: an output is not equivariant (the message gives the trial, the
            matrix and its determinant, the translation, the error and the tolerance),
            changes shape, or is not finite.
        InvalidInputError: bad arguments (unknown group, irreps that do not match, ...).
    """
    if not callable(fn):
        raise InvalidInputError(f"fn must be callable, got {type(fn).__name__}")
    if not isinstance(data, Data):
        raise InvalidInputError(f"data must be a torch_geometric Data, got {type(data).__name__}")
    pos = check_points(getattr(data, "pos", None), "data.pos", dim=3)
    if group not in _GROUPS:
        raise InvalidInputError(f"group must be one of {_GROUPS}, got {group!r}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InvalidInputError(f"trials must be an integer >= 1, got {trials!r}")
    out_irreps = None if irreps_out is None else _irreps(irreps_out, "irreps_out")
    in_irreps = None if irreps_in is None else _irreps(irreps_in, "irreps_in")
    if in_irreps is not None:
        x = getattr(data, "x", None)
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != in_irreps.dim:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else None
            raise InvalidInputError(
                f"data.x must have shape [N, {in_irreps.dim}] for irreps_in={in_irreps}, "
                f"got {shape}"
            )

    ref = _call(fn, data.clone(), "the original input")
    if out_irreps is not None and (ref.dim() == 0 or ref.shape[-1] != out_irreps.dim):
        raise InvalidInputError(
            f"fn output has shape {list(ref.shape)}; its last dimension must be "
            f"irreps_out.dim = {out_irreps.dim} ({out_irreps})"
        )
    atol = _DEFAULT_TOL.get(ref.dtype, 1e-4) if atol is None else float(atol)
    rtol = _DEFAULT_TOL.get(ref.dtype, 1e-4) if rtol is None else float(rtol)
    ref64 = ref.detach().to(torch.float64)
    scale = float(ref64.abs().max()) if ref64.numel() else 0.0
    tol = atol + rtol * scale

    gen = torch.Generator().manual_seed(int(seed))
    spread = float((pos.max(0).values - pos.min(0).values).max()) if pos.shape[0] else 1.0
    worst = 0.0
    for trial in range(trials):
        det = -1 if group == "O3" and trial % 2 == 0 else 1
        rot = random_orthogonal(gen, det)
        shift = torch.randn(3, generator=gen, dtype=torch.float64) * max(1.0, spread)
        if not translate:
            shift = torch.zeros(3, dtype=torch.float64)
        moved = data.clone()
        moved.pos = (pos.detach().to(torch.float64) @ rot.T + shift).to(pos.dtype)
        if in_irreps is not None:
            d_in = wigner_d_from_matrix(in_irreps, rot)
            moved.x = (data.x.detach().to(torch.float64) @ d_in.T).to(data.x.dtype)
        what = (
            f"trial {trial} ({'reflection' if det < 0 else 'rotation'}, det {det:+d}, "
            f"R={_fmt(rot)}, t={_fmt(shift)})"
        )
        out = _call(fn, moved, what)
        if out.shape != ref.shape:
            raise AssertionError(
                f"fn output changed shape under {what}: {list(ref.shape)} -> {list(out.shape)}"
            )
        expected = ref64 if out_irreps is None else ref64 @ wigner_d_from_matrix(out_irreps, rot).T
        diff = (out.detach().to(torch.float64) - expected).abs()
        err = float(diff.max()) if diff.numel() else 0.0
        worst = max(worst, err)
        if err > tol:
            where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
            kind = "invariant" if out_irreps is None else f"equivariant as {out_irreps}"
            raise AssertionError(
                f"fn output is not {kind} under {what}: max abs error {err:.3e} at index "
                f"{where} > tolerance {tol:.3e} (atol {atol:.1e} + rtol {rtol:.1e} * "
                f"max |output| {scale:.3e})"
            )
    return worst


def _irreps(value: IrrepsLike, name: str) -> o3.Irreps:
    try:
        return o3.Irreps(value)
    except (ValueError, TypeError, AssertionError) as exc:
        raise InvalidInputError(f"{name} is not valid e3nn irreps: {value!r} ({exc})") from None


def _call(fn: Callable[[Data], torch.Tensor], data: Data, what: str) -> torch.Tensor:
    out = fn(data)
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise InvalidInputError(f"fn must return a floating torch.Tensor, got {type(out).__name__}")
    if out.numel() and not bool(torch.isfinite(out).all()):
        raise AssertionError(f"fn output has NaN or Inf values on {what}")
    return out


def _fmt(t: torch.Tensor) -> str:
    return str(torch.round(t, decimals=4).tolist())
