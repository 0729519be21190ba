"""The simulator: procedural scenes ray-cast by LiDAR and depth-camera models.

Open3D's ``RaycastingScene`` casts the rays (:mod:`geo3d.sim.scene`); trimesh builds the
procedural assets; the sensor models, layout and kinematics are ours.
"""

from geo3d.sim.classes import *  # noqa: F401,F403
from geo3d.sim.depth_camera import *  # noqa: F401,F403
from geo3d.sim.layout import *  # noqa: F401,F403
from geo3d.sim.lidar import *  # noqa: F401,F403
from geo3d.sim.motion import *  # noqa: F401,F403
from geo3d.sim.scene import *  # noqa: F401,F403
from geo3d.sim.sequence import *  # noqa: F401,F403
from geo3d.sim.objects import *  # noqa: F401,F403
from geo3d.sim.structures import *  # noqa: F401,F403
from geo3d.sim.terrain import *  # noqa: F401,F403
from geo3d.sim import hand, hand_render  # articulated hands (JOINTS, BONES, render_hand)
from geo3d.sim import (classes, depth_camera, layout, lidar, motion, objects, scene, sequence,
                       structures, terrain)

__all__ = (classes.__all__ + scene.__all__ + lidar.__all__ + depth_camera.__all__
           + layout.__all__ + motion.__all__ + sequence.__all__ + objects.__all__
           + structures.__all__ + terrain.__all__)
