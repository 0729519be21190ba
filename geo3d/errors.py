"""Exceptions raised by geo3d.

Every message names the argument or path at fault and what was wrong with it.
"""

__all__ = ["Geo3dError", "InvalidInputError", "FileFormatError"]


class Geo3dError(Exception):
    """Base class of every error geo3d raises on purpose."""


class InvalidInputError(Geo3dError, ValueError):
    """Bad shapes, dtypes, NaN/Inf or empty input given to a public function."""


class FileFormatError(Geo3dError, ValueError):
    """A missing, empty, corrupt, truncated or unsupported file."""
