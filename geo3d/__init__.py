"""geo3d: efficient 3D geometric perception on point clouds and meshes."""

from geo3d import errors
from geo3d.errors import FileFormatError, Geo3dError, InvalidInputError

__version__ = "0.1.0"
__all__ = ["errors", "Geo3dError", "InvalidInputError", "FileFormatError", "__version__"]
