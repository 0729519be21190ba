"""Colour palettes of the viewer, and the legend that names them.

Colormaps come from matplotlib (``matplotlib.colormaps``); the categorical palettes are
fixed tables, so a colour means the same thing in every picture:

* semantic labels: ``geo3d.sim.classes.CLASS_COLORS`` for the simulator's classes; ids
  beyond it (other data sets, part labels) take matplotlib's ``tab20`` in order;
* instances and track ids: ``tab20`` indexed by ``id % 20``; id ``-1`` (no instance) is
  :data:`NONE_COLOR` grey;
* scores, intensity, heights, per-point error magnitudes: ``viridis`` from low (dark
  violet) to high (yellow) between the values' 2nd and 98th percentiles, or a given range;
* right / wrong (prediction vs ground truth): :data:`CORRECT_COLOR` grey / :data:`WRONG_COLOR`
  red;
* dense correspondence on a mesh: each template vertex's normalised coordinates in its
  bounding box are its RGB, so the colours vary smoothly over the template.
"""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib
import numpy as np

from geo3d.sim.classes import CLASS_COLORS, CLASSES

__all__ = [
    "NONE_COLOR",
    "CORRECT_COLOR",
    "WRONG_COLOR",
    "Legend",
    "label_colors",
    "label_palette",
    "instance_colors",
    "scalar_colors",
    "correspondence_colors",
]

#: Points without an instance / label (id -1): mid grey.
NONE_COLOR = (0.5, 0.5, 0.5)
#: Correctly predicted points in an error picture: light grey.
CORRECT_COLOR = (0.75, 0.75, 0.75)
#: Wrongly predicted points in an error picture: pure red.
WRONG_COLOR = (1.0, 0.0, 0.0)

#: A legend: ``(name, (r, g, b))`` pairs, colours in [0, 1].
Legend = tuple[tuple[str, tuple[float, float, float]], ...]


def label_palette(num_classes: int) -> np.ndarray:
    """RGB in [0, 1] for label ids ``0 .. num_classes - 1`` (``[num_classes, 3]`` float64).

    The first ``len(CLASS_COLORS)`` ids take the simulator's class colours, later ids
    ``tab20`` in order (cycled).
    """
    base = np.asarray(CLASS_COLORS, float)
    if num_classes <= len(base):
        return base[:num_classes].copy()
    tab = np.asarray(matplotlib.colormaps["tab20"].colors, float)
    extra = tab[np.arange(num_classes - len(base)) % len(tab)]
    return np.concatenate([base, extra])


def label_colors(labels: np.ndarray, names: Optional[Sequence[str]] = None
                 ) -> tuple[np.ndarray, Legend]:
    """Colour integer labels; ids < 0 are :data:`NONE_COLOR`.

    Args:
        labels: integer ids ``[N]``.
        names: class names by id (default: ``geo3d.sim.classes.CLASSES`` when the ids fit
            in it, else ``"class <id>"``).

    Returns:
        ``(rgb [N, 3] float64, legend)``; the legend lists the ids present, in id order.
    """
    labels = np.asarray(labels, np.int64)
    present = np.unique(labels[labels >= 0])
    count = int(present.max()) + 1 if present.size else 0
    if names is None and count <= len(CLASSES):
        names = CLASSES
    palette = label_palette(max(count, len(names) if names is not None else 0, 1))
    rgb = np.tile(np.asarray(NONE_COLOR, float), (labels.shape[0], 1))
    valid = labels >= 0
    rgb[valid] = palette[labels[valid]]
    legend = tuple((str(names[i]) if names is not None and i < len(names) else f"class {i}",
                    tuple(float(c) for c in palette[i])) for i in present)
    return rgb, legend


def instance_colors(ids: np.ndarray) -> np.ndarray:
    """Colour instance or track ids (``tab20`` by ``id % 20``; ``-1`` grey): ``[N, 3]``."""
    ids = np.asarray(ids, np.int64)
    tab = np.asarray(matplotlib.colormaps["tab20"].colors, float)
    rgb = tab[np.mod(ids, len(tab))]
    rgb[ids < 0] = NONE_COLOR
    return rgb


def scalar_colors(values: np.ndarray, vmin: Optional[float] = None,
                  vmax: Optional[float] = None, cmap: str = "viridis"
                  ) -> tuple[np.ndarray, tuple[float, float]]:
    """Map values to a matplotlib colormap.

    Args:
        values: ``[N]`` floats (finite).
        vmin, vmax: the range mapped to the ends of the map (default: the 2nd and 98th
            percentiles, robust to outliers such as a far LiDAR return).
        cmap: matplotlib colormap name (default ``"viridis"``).

    Returns:
        ``(rgb [N, 3] float64, (vmin, vmax))``.
    """
    values = np.asarray(values, float)
    if values.size == 0:
        return np.zeros((0, 3)), (0.0, 1.0)
    lo = float(np.percentile(values, 2)) if vmin is None else float(vmin)
    hi = float(np.percentile(values, 98)) if vmax is None else float(vmax)
    t = np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.asarray(matplotlib.colormaps[cmap](t))[:, :3].astype(float), (lo, hi)


def correspondence_colors(template_pos: np.ndarray) -> np.ndarray:
    """A smooth colour per template vertex: its coordinates normalised to its bounding box.

    Args:
        template_pos: ``[V, 3]`` template vertex positions.

    Returns:
        ``[V, 3]`` RGB in [0, 1]; vertex ``v`` of any shape in correspondence with the
        template takes colour ``[v]``, so matching parts share colours.
    """
    pos = np.asarray(template_pos, float)
    if pos.shape[0] == 0:
        return np.zeros((0, 3))
    lo, hi = pos.min(0), pos.max(0)
    return np.clip((pos - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)
