"""Semantic classes of the simulator.

Class ids are indices into :data:`CLASSES`. The three object classes come first, so a box
label 0..2 means the same thing in ``y`` and in ``box_labels``.
"""

from __future__ import annotations

from geo3d.errors import InvalidInputError

__all__ = ["CLASSES", "OBJECT_CLASSES", "class_index"]

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


def class_index(name: str) -> int:
    """Return the id of a class name, e.g. ``class_index("car") == 0``."""
    try:
        return CLASSES.index(name)
    except ValueError:
        raise InvalidInputError(f"name must be one of {CLASSES}, got {name!r}") from None
