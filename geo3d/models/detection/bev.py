"""Bird's-eye-view grid of a detector: the grid, voxel downsampling, the point-to-cell
scatter and the 2D CNN on the grid.

Plain torch (``scatter_reduce`` for the max-pooling into cells, ``nn.Conv2d`` for the
CNN) plus :func:`geo3d.geometry.voxel_grid` for the voxel ids. This is the "point features
into a BEV map" step of PointPillars (Lang et al., CVPR 2019) and CenterPoint (Yin et al.,
"Center-based 3D Object Detection and Tracking", CVPR 2021), written here because both
reference code bases need compiled CUDA/C++ voxelisation ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import torch
from torch import Tensor, nn

from geo3d.errors import InvalidInputError
from geo3d.geometry import voxel_grid

__all__ = ["BEVGrid", "crop_and_voxelize", "scatter_to_bev", "BEVNet"]


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BEVGrid:
    """A square-celled BEV grid in the LiDAR frame.

    Args:
        x_range: ``(min, max)`` metres along x (forward); default ``(-51.2, 51.2)``.
        y_range: ``(min, max)`` metres along y (left); default ``(-51.2, 51.2)``.
        z_range: ``(min, max)`` metres along z; points outside are dropped; default
            ``(-4, 4)`` (the sensor is 1.73 m above the road).
        cell_size: metres per input cell (default 0.4). The head predicts at twice this.
        voxel_size: points are first reduced to one per voxel of this edge (metres,
            default 0.2; 0 keeps every point).

    The number of cells along each axis must be a multiple of 4 (two stride-2 stages).
    """

    x_range: Tuple[float, float] = (-51.2, 51.2)
    y_range: Tuple[float, float] = (-51.2, 51.2)
    z_range: Tuple[float, float] = (-4.0, 4.0)
    cell_size: float = 0.4
    voxel_size: float = 0.2

    def __post_init__(self) -> None:
        for name in ("x_range", "y_range", "z_range"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise InvalidInputError(f"{name} must be a (min, max) pair, got {value!r}")
            lo, hi = (_finite(v, name) for v in value)
            if not lo < hi:
                raise InvalidInputError(f"{name} must have min < max, got {value!r}")
            object.__setattr__(self, name, (lo, hi))
        cell = _finite(self.cell_size, "cell_size")
        if cell <= 0:
            raise InvalidInputError(f"cell_size must be > 0, got {self.cell_size!r}")
        if _finite(self.voxel_size, "voxel_size") < 0:
            raise InvalidInputError(f"voxel_size must be >= 0, got {self.voxel_size!r}")
        for name, (lo, hi) in (("x_range", self.x_range), ("y_range", self.y_range)):
            n = (hi - lo) / cell
            if abs(n - round(n)) > 1e-6 or round(n) % 4 or round(n) < 4:
                raise InvalidInputError(
                    f"{name} / cell_size must be a whole multiple of 4 cells, got {n:g}"
                )

    @property
    def shape(self) -> Tuple[int, int]:
        """``(H, W)``: cells along x (rows) and y (columns)."""
        return (round((self.x_range[1] - self.x_range[0]) / self.cell_size),
                round((self.y_range[1] - self.y_range[0]) / self.cell_size))


def crop_and_voxelize(pos: Tensor, batch: Tensor, grid: BEVGrid) -> Tensor:
    """Indices of the points kept: inside the grid's box, one per occupied voxel.

    The voxel grid is anchored at the grid's minimum corner, so a cloud that was already
    voxelized with the same grid keeps all its points (the step is idempotent). The point
    kept in a voxel is its first one.

    Shapes:
        ``pos [N, 3], batch [N] (sorted) -> [M]`` long, increasing (so ``batch`` stays sorted).
    """
    lo = pos.new_tensor([grid.x_range[0], grid.y_range[0], grid.z_range[0]])
    hi = pos.new_tensor([grid.x_range[1], grid.y_range[1], grid.z_range[1]])
    inside = ((pos >= lo) & (pos < hi)).all(dim=1).nonzero().view(-1)
    if grid.voxel_size == 0 or inside.numel() == 0:
        return inside
    ids = voxel_grid(pos[inside].detach(), grid.voxel_size, batch[inside], start=lo, end=hi)
    _, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), inside.numel(), dtype=torch.long,
                       device=pos.device)
    first.scatter_reduce_(0, inverse, torch.arange(inside.numel(), device=pos.device), "amin")
    return inside[first.sort().values]


def scatter_to_bev(features: Tensor, pos: Tensor, batch: Tensor, num_graphs: int,
                   grid: BEVGrid) -> Tensor:
    """Max-pool point features into BEV cells, plus a log point-count channel.

    Empty cells are 0 (features are expected after a ReLU, so ``>= 0``). Points outside
    the grid's x-y range are ignored.

    Shapes:
        ``features [N, C], pos [N, 3], batch [N] -> [B, C + 1, H, W]`` with ``B =
        num_graphs`` and ``(H, W) = grid.shape`` (rows along x, columns along y).
    """
    h, w = grid.shape
    row = torch.floor((pos[:, 0].detach() - grid.x_range[0]) / grid.cell_size).long()
    col = torch.floor((pos[:, 1].detach() - grid.y_range[0]) / grid.cell_size).long()
    ok = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    cell = (batch[ok] * h + row[ok]) * w + col[ok]
    c = features.shape[1]
    out = features.new_zeros((num_graphs * h * w, c))
    out = out.scatter_reduce(0, cell.view(-1, 1).expand(-1, c), features[ok], "amax",
                             include_self=True)
    count = features.new_zeros(num_graphs * h * w).index_add_(
        0, cell, features.new_ones(cell.shape[0]))
    out = torch.cat([out, torch.log1p(count).view(-1, 1)], dim=1)
    return out.view(num_graphs, h, w, c + 1).permute(0, 3, 1, 2).contiguous()


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class BEVNet(nn.Module):
    """A small two-scale 2D CNN: full resolution -> /2 -> /4, the /4 map upsampled to /2
    and fused (an SECOND/PointPillars-style neck, two stages only).

    Args:
        in_channels: BEV channels ``C``.
        width: base width ``w``: stage widths ``w, 2w, 4w``; output ``2w``.

    Shapes:
        ``[B, C, H, W] -> [B, 2w, H/2, W/2]``.
    """

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.stem = _conv(in_channels, width)
        self.down1 = nn.Sequential(_conv(width, 2 * width, 2), _conv(2 * width, 2 * width))
        self.down2 = nn.Sequential(_conv(2 * width, 4 * width, 2), _conv(4 * width, 4 * width))
        self.up = nn.Sequential(nn.ConvTranspose2d(4 * width, 2 * width, 2, 2, bias=False),
                                nn.BatchNorm2d(2 * width), nn.ReLU())
        self.fuse = _conv(4 * width, 2 * width)
        self.out_channels = 2 * width

    def forward(self, bev: Tensor) -> Tensor:
        x1 = self.down1(self.stem(bev))
        x2 = self.down2(x1)
        return self.fuse(torch.cat([x1, self.up(x2)], dim=1))
