"""Semantic classes of the simulator.

Class ids are indices into :data:`CLASSES`. The three object classes come first, so a box
label 0..2 means the same thing in ``y`` and in ``box_labels``.
"""

from __future__ import annotations

from geo3d.errors import InvalidInputError

__all__ = ["CLASSES", "OBJECT_CLASSES", "CLASS_COLORS", "class_index"]

CLASSES: tuple[str, ...] = (
    "car",
    "pedestrian",
    "cyclist",
    "ground",
    "building",
    "wall",
    "pole",
    "vegetation",
)
OBJECT_CLASSES: tuple[str, ...] = CLASSES[:3]

#: RGB in [0, 1] per class, in the order of ``CLASSES`` (SemanticKITTI-like hues).
CLASS_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.39, 0.59, 0.96),  # car: blue
    (1.00, 0.12, 0.12),  # pedestrian: red
    (0.78, 0.16, 1.00),  # cyclist: violet
    (0.55, 0.45, 0.40),  # ground: brown-grey
    (1.00, 0.78, 0.00),  # building: amber
    (1.00, 0.47, 0.20),  # wall: orange
    (1.00, 0.94, 0.59),  # pole: pale yellow
    (0.00, 0.69, 0.00),  # vegetation: green
)


def class_index(name: str) -> int:
    """Return the id of a class name, e.g. ``class_index("car") == 0``."""
    try:
        return CLASSES.index(name)
    except ValueError:
        raise InvalidInputError(f"name must be one of {CLASSES}, got {name!r}") from None
