"""Pictures of geo3d data and predictions (Open3D adapters and renderers)."""

from geo3d.viewers.bev import *  # noqa: F401,F403
from geo3d.viewers import bev

__all__ = bev.__all__
