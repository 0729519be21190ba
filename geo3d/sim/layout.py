"""Procedural street scenes: a (possibly curved) road over rough terrain, buildings, walls,
poles and vegetation along it, and cars, cyclists and pedestrians on it.

Everything is placed in road coordinates ``(s, d)`` (arc length along the centre line,
signed lateral offset, left positive) and checked in the world frame: footprints are
oriented rectangles, and a candidate that overlaps anything already placed is retried at a
new random spot, then dropped. Objects stand on the terrain (:meth:`Terrain.height`):
vehicles are tilted onto the plane fitted under their footprint, people and structures
stay upright. Traffic keeps to the right: the lanes at ``d < 0`` drive towards ``+s``.

Lateral zones on each side (``L = lanes * lane_width``): driving lanes ``[0, L]``, a bike
strip ``[L, L+1]``, parking ``[L+1, L+3.5]``, the curb at ``C = L+3.5``, sidewalk
``[C, C+4]`` (poles near the curb, pedestrians), then front gardens (vegetation, walls) and
buildings set back from ``C+5``.

The asset meshes come from :mod:`geo3d.sim.objects`, :mod:`geo3d.sim.structures` and
:mod:`geo3d.sim.terrain` (trimesh); the placement logic is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Optional

import numpy as np
import trimesh

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_positive
from geo3d.sim.classes import CLASSES, class_index
from geo3d.sim.lidar import _check_int
from geo3d.sim.objects import OBJECT_BUILDERS
from geo3d.sim.scene import Scene, SceneMesh
from geo3d.sim.structures import STRUCTURE_BUILDERS, STRUCTURE_CLASSES
from geo3d.sim.terrain import Terrain, make_ground

__all__ = ["SceneConfig", "Road", "Agent", "Layout", "generate_layout", "ground_poses",
           "footprints_overlap", "REFLECTIVITY", "EGO_SIZE"]

# LiDAR (905 nm) reflectivity per class: paint, plates and signs are bright, asphalt dark,
# foliage fairly bright in the near infrared. Each mesh varies by x0.7..1.3 around these.
REFLECTIVITY: dict[str, float] = {
    "car": 0.6, "pedestrian": 0.3, "cyclist": 0.4, "ground": 0.2, "building": 0.35,
    "wall": 0.4, "pole": 0.65, "vegetation": 0.45,
}
# Ego vehicle footprint (length, width), metres: a KITTI-like station wagon.
EGO_SIZE: tuple[float, float] = (4.6, 1.9)


def _check_range(value: object, name: str, integer: bool, low: float = 0.0) -> None:
    ok = isinstance(value, tuple) and len(value) == 2
    if ok:
        kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
        ok = all(isinstance(v, kinds) and not isinstance(v, bool) and np.isfinite(v)
                 for v in value) and low <= value[0] <= value[1]
    if not ok:
        kind = "integers" if integer else "numbers"
        raise InvalidInputError(f"{name} must be a (min, max) tuple of {kind} with "
                                f"{low} <= min <= max, got {value!r}")


@dataclass(frozen=True)
class SceneConfig:
    """How a street scene is laid out. Count fields are inclusive ``(min, max)`` ranges.

    Args:
        ground_extent: side of the square terrain in metres (default 120).
        ground_spacing: terrain grid spacing in metres (default 2).
        max_slope: largest terrain gradient, rise over run (default 0.05).
        roughness: terrain bump standard deviation in metres (default 0.05).
        max_curvature: road curvature is uniform in ``[-max, max]``, 1/m (default 1/150).
        lane_width: metres (default 3.5).
        lanes_per_direction: range of driving lanes each way (default (1, 2)).
        num_cars: cars, parked and moving (default (6, 16)).
        parked_fraction: probability that a car is parked (default 0.4).
        num_pedestrians: (default (2, 10)).
        crossing_fraction: probability that a pedestrian is crossing the road (0.2).
        num_cyclists: (default (0, 4)).
        num_buildings, num_walls, num_poles, num_trees, num_bushes: structure counts
            (defaults (6, 12), (2, 6), (6, 14), (6, 14), (4, 10)).
        ego_s: range of the ego vehicle's start position along the road, metres
            (default (-20, 10)).
        max_tries: placement attempts per item before it is dropped (default 20).
    """

    ground_extent: float = 120.0
    ground_spacing: float = 2.0
    max_slope: float = 0.05
    roughness: float = 0.05
    max_curvature: float = 1.0 / 150.0
    lane_width: float = 3.5
    lanes_per_direction: tuple[int, int] = (1, 2)
    num_cars: tuple[int, int] = (6, 16)
    parked_fraction: float = 0.4
    num_pedestrians: tuple[int, int] = (2, 10)
    crossing_fraction: float = 0.2
    num_cyclists: tuple[int, int] = (0, 4)
    num_buildings: tuple[int, int] = (6, 12)
    num_walls: tuple[int, int] = (2, 6)
    num_poles: tuple[int, int] = (6, 14)
    num_trees: tuple[int, int] = (6, 14)
    num_bushes: tuple[int, int] = (4, 10)
    ego_s: tuple[float, float] = (-20.0, 10.0)
    max_tries: int = 20

    def __post_init__(self) -> None:
        check_positive(self.ground_extent, "ground_extent")
        check_positive(self.ground_spacing, "ground_spacing")
        if self.ground_extent < 40.0:
            raise InvalidInputError(f"ground_extent must be at least 40 m, got "
                                    f"{self.ground_extent!r}")
        check_positive(self.max_slope, "max_slope", allow_zero=True)
        check_positive(self.roughness, "roughness", allow_zero=True)
        check_positive(self.max_curvature, "max_curvature", allow_zero=True)
        if self.max_curvature > 0.02:
            raise InvalidInputError(f"max_curvature must be <= 0.02 1/m (radius >= 50 m), "
                                    f"got {self.max_curvature!r}")
        check_positive(self.lane_width, "lane_width")
        for f in fields(self):
            if f.name.startswith("num_") or f.name == "lanes_per_direction":
                _check_range(getattr(self, f.name), f.name, integer=True)
        if self.lanes_per_direction[0] < 1 or self.lanes_per_direction[1] > 4:
            raise InvalidInputError(f"lanes_per_direction must lie within 1..4, got "
                                    f"{self.lanes_per_direction!r}")
        for name in ("parked_fraction", "crossing_fraction"):
            v = getattr(self, name)
            check_positive(v, name, allow_zero=True)
            if v > 1:
                raise InvalidInputError(f"{name} must be in [0, 1], got {v!r}")
        _check_range(self.ego_s, "ego_s", integer=False, low=-np.inf)
        if max(abs(self.ego_s[0]), abs(self.ego_s[1])) > self.half_length:
            raise InvalidInputError(f"ego_s must lie within +-{self.half_length} (the road), "
                                    f"got {self.ego_s!r}")
        _check_int(self.max_tries, "max_tries", 1)

    @property
    def half_length(self) -> float:
        """Things are placed at ``|s| <= half_length`` (5 m inside the terrain)."""
        return self.ground_extent / 2 - 5.0


@dataclass(frozen=True)
class Road:
    """A constant-curvature road through the origin, heading +x there.

    Args:
        curvature: 1/m, positive turns left (0 = straight).
        lane_width: metres.
        lanes: driving lanes per direction.
    """

    curvature: float
    lane_width: float
    lanes: int

    @property
    def curb(self) -> float:
        """Lateral offset of the curb (edge of the parking strip), metres."""
        return self.lanes * self.lane_width + 3.5

    @property
    def bike_d(self) -> float:
        """Lateral offset of the cyclists' line, metres (either side)."""
        return self.lanes * self.lane_width + 0.5

    @property
    def parking_d(self) -> float:
        """Lateral offset of parked cars' centres, metres (either side)."""
        return self.lanes * self.lane_width + 2.25

    def lane_d(self, side: int, lane: int) -> float:
        """Centre of driving lane ``lane`` (0 = innermost) on ``side`` (-1 right, +1 left)."""
        return side * (lane + 0.5) * self.lane_width

    def heading(self, s: np.ndarray) -> np.ndarray:
        """World yaw of the road tangent at arc length ``s``."""
        return self.curvature * np.asarray(s, float)

    def to_world(self, s, d) -> tuple[np.ndarray, np.ndarray]:
        """World ``(x, y)`` of road coordinates ``(s, d)`` (arrays broadcast)."""
        s, d = np.broadcast_arrays(np.asarray(s, float), np.asarray(d, float))
        k = self.curvature
        th = k * s
        if abs(k) < 1e-9:
            cx, cy = s, np.zeros_like(s)
        else:
            cx, cy = np.sin(th) / k, (1 - np.cos(th)) / k
        return cx - d * np.sin(th), cy + d * np.cos(th)


def footprints_overlap(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Which oriented rectangles in ``others`` overlap ``box`` (separating axis test).

    Args:
        box: ``[5]`` = (x, y, length, width, yaw).
        others: ``[K, 5]`` rectangles.

    Returns:
        bool ``[K]``; touching rectangles count as overlapping.
    """
    box = np.asarray(box, float)
    others = np.asarray(others, float).reshape(-1, 5)
    out = np.zeros(len(others), bool)
    delta = others[:, :2] - box[:2]
    # Only rectangles whose circumscribed circles meet can overlap.
    reach = (np.hypot(others[:, 2], others[:, 3]) + np.hypot(box[2], box[3])) / 2
    near = np.flatnonzero((delta**2).sum(1) <= reach**2)
    if len(near) == 0:
        return out
    b, delta = others[near], delta[near]
    ca, sa = np.cos(box[4]), np.sin(box[4])
    dx = delta[:, 0] * ca + delta[:, 1] * sa  # centre offset in box's frame
    dy = delta[:, 1] * ca - delta[:, 0] * sa
    rel = b[:, 4] - box[4]
    cr, sr = np.cos(rel), np.sin(rel)
    c, s = np.abs(cr), np.abs(sr)
    al, aw, bl, bw = box[2] / 2, box[3] / 2, b[:, 2] / 2, b[:, 3] / 2
    separated = (np.abs(dx) > al + bl * c + bw * s) | (np.abs(dy) > aw + bl * s + bw * c)
    ex, ey = dx * cr + dy * sr, dy * cr - dx * sr  # centre offset in the other's frame
    separated |= (np.abs(ex) > bl + al * c + aw * s) | (np.abs(ey) > bw + al * s + aw * c)
    out[near] = ~separated
    return out


def ground_poses(terrain: Terrain, x, y, yaw, length, width, tilt) -> np.ndarray:
    """World-from-local poses of footprints standing on the terrain.

    A tilted footprint lies on the least-squares plane through the terrain heights under
    its corners and centre; an upright one is lowered to the lowest of those heights, so
    it never floats.

    Args:
        terrain: the ground.
        x, y, yaw, length, width: footprint centres, headings and sizes ``[n]``.
        tilt: bool ``[n]``, tilt with the ground (vehicles) or stay upright.

    Returns:
        float64 ``[n, 4, 4]``.
    """
    x, y, yaw, length, width, tilt = (np.atleast_1d(np.asarray(a, float)) for a in
                                      (x, y, yaw, length, width, tilt))
    c, s = np.cos(yaw), np.sin(yaw)
    fwd = np.stack([c, s, np.zeros_like(c)], -1)
    left = np.stack([-s, c, np.zeros_like(c)], -1)
    su = np.array([0.0, 1, 1, -1, -1])[None] * length[:, None] / 2
    sv = np.array([0.0, 1, -1, 1, -1])[None] * width[:, None] / 2
    h = terrain.height(x[:, None] + su * c[:, None] - sv * s[:, None],
                       y[:, None] + su * s[:, None] + sv * c[:, None])
    gx = (h * su).sum(1) / np.maximum((su**2).sum(1), 1e-9) * tilt
    gy = (h * sv).sum(1) / np.maximum((sv**2).sum(1), 1e-9) * tilt
    z = np.where(tilt > 0, h.mean(1), h.min(1))
    ez = np.array([0.0, 0.0, 1.0])
    xa = fwd + gx[:, None] * ez
    xa /= np.linalg.norm(xa, axis=1, keepdims=True)
    za = -gx[:, None] * fwd - gy[:, None] * left + ez
    za /= np.linalg.norm(za, axis=1, keepdims=True)
    poses = np.zeros((len(x), 4, 4))
    poses[:, :3, 0], poses[:, :3, 1], poses[:, :3, 2] = xa, np.cross(za, xa), za
    poses[:, :3, 3] = np.stack([x, y, z], -1)
    poses[:, 3, 3] = 1.0
    return poses


@dataclass(frozen=True, eq=False)
class Agent:
    """A road user placed in the scene (its ``track_id`` is its index in ``Layout.agents``).

    Attributes:
        cls: class name, one of ``OBJECT_CLASSES`` (``"car"`` also for the ego).
        behaviour: ``"moving"``, ``"parked"``, ``"walking"``, ``"crossing"`` or ``"ego"``.
        mesh: local-frame mesh (front +x, bottom z=0), None for the ego (not rendered).
        length, width: footprint size in metres.
        s, d, psi: road coordinates and heading relative to the road tangent.
        lane_d: the lateral offset the agent steers to.
        direction: +1 if it travels towards +s, -1 towards -s.
        reflectivity: LiDAR reflectivity of the mesh.
    """

    cls: str
    behaviour: str
    mesh: Optional[trimesh.Trimesh]
    length: float
    width: float
    s: float
    d: float
    psi: float
    lane_d: float
    direction: int
    reflectivity: float

    @property
    def tilt(self) -> bool:
        """Vehicles tilt with the ground; people stay upright."""
        return self.cls != "pedestrian"


@dataclass(frozen=True, eq=False)
class Layout:
    """A generated street scene before any sensor sees it.

    Attributes:
        terrain: the ground.
        road: the road geometry.
        statics: ground and structures as placed meshes (instance -1).
        static_footprints: ``[S, 5]`` footprints of the structures (x, y, l, w, yaw).
        agents: road users; ``agents[k]`` has track id ``k``.
        ego: the ego vehicle (carries the sensors; not rendered).
    """

    terrain: Terrain
    road: Road
    statics: tuple[SceneMesh, ...]
    static_footprints: np.ndarray
    agents: tuple[Agent, ...]
    ego: Agent

    def agent_poses(self, s, d, psi, length, width, tilt) -> np.ndarray:
        """World-from-local poses ``[n, 4, 4]`` of agents at road coordinates (arrays)."""
        x, y = self.road.to_world(s, d)
        return ground_poses(self.terrain, x, y, self.road.heading(s) + np.asarray(psi),
                            length, width, tilt)

    def scene(self, agent_poses: Optional[np.ndarray] = None) -> Scene:
        """The ray-castable scene: statics, then agent ``k`` at mesh index
        ``len(statics) + k`` with instance ``k`` (``agent_poses`` default: as placed)."""
        if agent_poses is None:
            agent_poses = self.agent_poses(*self._agent_arrays())
        meshes = list(self.statics)
        for k, (a, pose) in enumerate(zip(self.agents, agent_poses)):
            meshes.append(SceneMesh.from_trimesh(a.mesh, class_index(a.cls), k, pose,
                                                 a.reflectivity))
        return Scene(meshes)

    def _agent_arrays(self):
        a = self.agents
        return (np.array([g.s for g in a]), np.array([g.d for g in a]),
                np.array([g.psi for g in a]), np.array([g.length for g in a]),
                np.array([g.width for g in a]), np.array([g.tilt for g in a]))


class _Placer:
    """Random placement with footprint overlap rejection (world frame)."""

    def __init__(self, rng: np.random.Generator, road: Road, config: SceneConfig) -> None:
        self.rng, self.road, self.config = rng, road, config
        self.boxes: list[np.ndarray] = []
        self._cache: Optional[np.ndarray] = None

    def side(self) -> int:
        """A random side of the road: -1 (right) or +1 (left)."""
        return int(self.rng.choice((-1, 1)))

    def s(self) -> float:
        """A random position along the road."""
        return float(self.rng.uniform(-self.config.half_length, self.config.half_length))

    def try_place(self, length: float, width: float, clearance: float,
                  sample: Callable[[], tuple[float, float, float]]):
        """Sample ``(s, d, psi)`` until the footprint (grown by ``clearance`` on each side)
        overlaps nothing placed; return it, or None after ``max_tries``."""
        lim = self.config.ground_extent / 2 - 1.0
        for _ in range(self.config.max_tries):
            s, d, psi = sample()
            x, y = self.road.to_world(s, d)
            box = np.array([x, y, length, width, float(self.road.heading(s)) + psi])
            if max(abs(box[0]), abs(box[1])) + max(length, width) / 2 > lim:
                continue
            if self._cache is None:
                self._cache = np.array(self.boxes).reshape(-1, 5)
            grown = box + np.array([0, 0, 2 * clearance, 2 * clearance, 0])
            if footprints_overlap(grown, self._cache).any():
                continue
            self.boxes.append(box)
            self._cache = None
            return s, d, psi
        return None


def _count(rng: np.random.Generator, r: tuple[int, int]) -> int:
    return int(rng.integers(r[0], r[1] + 1))


def _reflectivity(rng: np.random.Generator, cls: str) -> float:
    return float(np.clip(REFLECTIVITY[cls] * rng.uniform(0.7, 1.3), 0.02, 1.0))


def _place_structures(placer: _Placer, terrain: Terrain) -> list[SceneMesh]:
    """Buildings, walls, poles, trees and bushes beside the road, standing upright."""
    rng, config, road, u = placer.rng, placer.config, placer.road, placer.rng.uniform
    curb = road.curb
    placed: list[tuple] = []

    def structure(name: str, clearance: float, lateral: Callable[[float, float], float],
                  along_road: bool) -> None:
        mesh = STRUCTURE_BUILDERS[name](rng)
        l, w = mesh.extents[:2]
        sd = placer.side()

        def sample():
            psi = 0.0 if along_road else float(u(-np.pi, np.pi))
            return placer.s(), sd * lateral(l, w), psi

        where = placer.try_place(l, w, clearance, sample)
        if where is not None:
            placed.append((mesh, STRUCTURE_CLASSES[name], *where, l, w))

    for _ in range(_count(rng, config.num_buildings)):
        structure("building", 0.5, lambda l, w: curb + 5.0 + u(0, 6) + w / 2, True)
    for _ in range(_count(rng, config.num_walls)):
        structure("wall", 0.2, lambda l, w: curb + 4.0 + u(0, 1) + w / 2, True)
    for _ in range(_count(rng, config.num_poles)):
        structure("pole", 0.2, lambda l, w: curb + 0.4, True)
    for _ in range(_count(rng, config.num_trees)):
        structure("tree", 0.2, lambda l, w: curb + 3.0 + w / 2 + u(0, 2.5), False)
    for _ in range(_count(rng, config.num_bushes)):
        structure("bush", 0.2, lambda l, w: curb + 4.0 + w / 2 + u(0, 2), False)
    if not placed:
        return []
    _, _, s, d, psi, l, w = (np.array(c) for c in zip(*placed))
    x, y = road.to_world(s, d)
    poses = ground_poses(terrain, x, y, road.heading(s) + psi, l, w, np.zeros(len(s)))
    return [SceneMesh.from_trimesh(mesh, class_index(cls), -1, pose, _reflectivity(rng, cls))
            for (mesh, cls, *_), pose in zip(placed, poses)]


def _place_agents(placer: _Placer) -> list[Agent]:
    """Cars (parked or in a lane), cyclists on the bike strip, pedestrians on the sidewalks
    or crossing the road."""
    rng, config, road, u = placer.rng, placer.config, placer.road, placer.rng.uniform
    curb = road.curb
    agents: list[Agent] = []

    def agent(cls: str, behaviour: str, clearance: float, direction: int,
              sample: Callable[[], tuple[float, float, float]], lane_d: Optional[float]):
        mesh = OBJECT_BUILDERS[cls](rng)
        l, w = (float(e) for e in mesh.extents[:2])
        where = placer.try_place(l, w, clearance, sample)
        if where is not None:
            s, d, psi = where
            agents.append(Agent(cls, behaviour, mesh, l, w, s, d, psi,
                                float(d if lane_d is None else lane_d), direction,
                                _reflectivity(rng, cls)))

    for _ in range(_count(rng, config.num_cars)):
        sd = placer.side()
        travel = 0.0 if sd < 0 else np.pi  # keep right: d < 0 drives towards +s
        if rng.random() < config.parked_fraction:
            flip = np.pi if rng.random() < 0.2 else 0.0
            agent("car", "parked", 0.3, -sd if flip == 0 else sd,
                  lambda: (placer.s(), sd * road.parking_d + rng.normal(0, 0.1),
                           travel + flip + rng.normal(0, 0.03)), None)
        else:
            lane = road.lane_d(sd, int(rng.integers(road.lanes)))
            agent("car", "moving", 1.0, -sd,
                  lambda: (placer.s(), lane + rng.normal(0, 0.2), travel + rng.normal(0, 0.02)),
                  lane)
    for _ in range(_count(rng, config.num_cyclists)):
        sd = placer.side()
        agent("cyclist", "moving", 0.5, -sd,
              lambda: (placer.s(), sd * road.bike_d + rng.normal(0, 0.1),
                       (0.0 if sd < 0 else np.pi) + rng.normal(0, 0.03)),
              sd * road.bike_d)
    for _ in range(_count(rng, config.num_pedestrians)):
        sd = placer.side()
        direction = int(rng.choice((-1, 1)))
        walk = 0.0 if direction > 0 else np.pi
        band = sd * (curb + 2.45)
        if rng.random() < config.crossing_fraction:  # heading for the far sidewalk
            agent("pedestrian", "crossing", 0.3, direction,
                  lambda: (placer.s(), u(-curb + 0.5, curb - 0.5), sd * np.pi / 2
                           + rng.normal(0, 0.2)), band)
        else:
            agent("pedestrian", "walking", 0.3, direction,
                  lambda: (placer.s(), sd * (curb + u(1.3, 3.6)), walk + rng.normal(0, 0.2)),
                  None)
    return agents


def generate_layout(config: SceneConfig, rng: np.random.Generator) -> Layout:
    """Generate a street scene.

    Args:
        config: what to place and how much.
        rng: the only source of randomness (the layout is a pure function of its state).

    Returns:
        The :class:`Layout`.
    """
    if not isinstance(config, SceneConfig):
        raise InvalidInputError(f"config must be a SceneConfig, got {type(config).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise InvalidInputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    terrain = make_ground(rng, config.ground_extent, config.max_slope, config.roughness,
                          config.ground_spacing)
    road = Road(float(rng.uniform(-1, 1) * config.max_curvature), float(config.lane_width),
                _count(rng, config.lanes_per_direction))
    placer = _Placer(rng, road, config)
    # The ego first: its footprint (plus headway) is kept free. It drives in a right lane.
    ego_lane = road.lane_d(-1, int(rng.integers(road.lanes)))
    ego_s = float(rng.uniform(*config.ego_s))
    placer.try_place(EGO_SIZE[0] + 4.0, EGO_SIZE[1], 0.3, lambda: (ego_s, ego_lane, 0.0))
    ego = Agent("car", "ego", None, EGO_SIZE[0], EGO_SIZE[1], ego_s, ego_lane, 0.0, ego_lane,
                1, REFLECTIVITY["car"])
    first_static = len(placer.boxes)
    ground = SceneMesh.from_trimesh(terrain.mesh, class_index("ground"),
                                    reflectivity=_reflectivity(rng, "ground"))
    statics = [ground] + _place_structures(placer, terrain)
    static_boxes = np.array(placer.boxes[first_static:]).reshape(-1, 5)
    agents = _place_agents(placer)
    return Layout(terrain, road, tuple(statics), static_boxes, tuple(agents), ego)


assert set(REFLECTIVITY) == set(CLASSES)
