"""Bird's-eye-view pictures of a LiDAR frame: points coloured by class, boxes with headings.

A plain numpy rasteriser (no window, no GPU), written out as PNG by Open3D's image I/O.
The ego sensor sits at the image centre; x (forward) points up and y (left) points left.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import open3d as o3d
from torch_geometric.data import Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import box_corners
from geo3d.geometry.validation import check_points, check_positive
from geo3d.io import atomic_write
from geo3d.sim.classes import CLASS_COLORS

__all__ = ["bev_image", "save_bev"]

_BACKGROUND = (18, 18, 24)
_BOX_COLOR = (255, 255, 255)


def _draw_segment(img: np.ndarray, p0: np.ndarray, p1: np.ndarray, color) -> None:
    n = int(np.ceil(np.abs(p1 - p0).max())) + 1
    t = np.linspace(0.0, 1.0, n)[:, None]
    rc = np.rint(p0 + t * (p1 - p0)).astype(int)
    ok = (rc[:, 0] >= 0) & (rc[:, 0] < img.shape[0]) & (rc[:, 1] >= 0) & (rc[:, 1] < img.shape[1])
    img[rc[ok, 0], rc[ok, 1]] = color


def bev_image(
    data: Data,
    extent: float = 50.0,
    resolution: float = 0.1,
    colors: Optional[Sequence[Sequence[float]]] = None,
) -> np.ndarray:
    """Rasterise a frame seen from above.

    Args:
        data: ``Data`` with ``pos``; optional ``y`` (colour by class, else by height) and
            ``boxes`` (drawn as outlines with a heading tick).
        extent: half-width of the square view in metres (default 50).
        resolution: metres per pixel (default 0.1).
        colors: RGB in [0, 1] per class (default ``geo3d.sim.CLASS_COLORS``).

    Returns:
        ``uint8`` image ``[H, W, 3]`` with ``H = W = 2 * extent / resolution``.
    """
    pos = check_points(getattr(data, "pos", None), "data.pos")
    check_positive(extent, "extent")
    check_positive(resolution, "resolution")
    size = int(round(2 * extent / resolution))
    if size > 8192:
        raise InvalidInputError(f"extent / resolution gives a {size}px image; at most 8192")
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _BACKGROUND
    xyz = pos.detach().cpu().double().numpy()
    rows = np.floor((extent - xyz[:, 0]) / resolution).astype(np.int64)
    cols = np.floor((extent - xyz[:, 1]) / resolution).astype(np.int64)
    keep = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    y = getattr(data, "y", None)
    if y is not None and y.shape[0] == pos.shape[0]:
        palette = np.asarray(CLASS_COLORS if colors is None else colors, float)
        labels = y.cpu().numpy()
        keep &= (labels >= 0) & (labels < len(palette))
        rgb = palette[np.clip(labels, 0, len(palette) - 1)]
    else:
        z = xyz[:, 2]
        t = np.clip((z - np.percentile(z, 2)) / max(np.ptp(z), 1e-6), 0, 1) if len(z) else z
        rgb = np.stack([t, 0.3 + 0.7 * (1 - t), 1 - t], 1)
    order = np.argsort(xyz[keep, 2])  # higher points drawn last, on top
    img[rows[keep][order], cols[keep][order]] = (rgb[keep][order] * 255).astype(np.uint8)
    boxes = getattr(data, "boxes", None)
    if boxes is not None and boxes.shape[0]:
        corners = box_corners(boxes.detach().cpu().double())[:, :4, :2].numpy()
        pix = np.stack([(extent - corners[..., 0]), (extent - corners[..., 1])], -1) / resolution
        for quad in pix:
            for i in range(4):
                _draw_segment(img, quad[i], quad[(i + 1) % 4], _BOX_COLOR)
            front = (quad[0] + quad[3]) / 2  # corners 0 and 3 are the front face
            _draw_segment(img, quad.mean(0), front, _BOX_COLOR)
    return img


def save_bev(data: Data, path: Union[str, Path], **kwargs) -> Path:
    """Write :func:`bev_image` of ``data`` to a PNG atomically; returns the path.

    Keyword arguments go to :func:`bev_image`.
    """
    img = bev_image(data, **kwargs)
    path = Path(path)
    with atomic_write(path, suffix=".png") as tmp:
        if not o3d.io.write_image(str(tmp), o3d.geometry.Image(np.ascontiguousarray(img))):
            raise InvalidInputError(f"could not write the image to {path}")
    return path
