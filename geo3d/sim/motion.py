"""Kinematics of the road users in a generated street scene, for sequences.

All agents move in road (Frenet) coordinates ``(s, d, psi)`` of the layout's road, so
vehicles follow its curve:

* cars, cyclists and the ego vehicle: a kinematic bicycle model whose steering (limited
  to ``max_curvature``) keeps the lane, with the Intelligent Driver Model (Treiber,
  Hennecke & Helbing, Phys. Rev. E 62, 2000) on the nearest road user ahead in the lane
  corridor, so they queue behind slower traffic and brake for crossing pedestrians;
* pedestrians: constant walking speed, heading a random walk pulled towards their
  sidewalk line (or, when crossing, towards the far sidewalk);
* parked cars stay still.

A move that would make an agent's footprint overlap another agent's or a structure's is
not made (the agent stops; a pedestrian also turns), so footprints never overlap. numpy
does the arithmetic; the model is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geo3d.errors import InvalidInputError
from geo3d.geometry.validation import check_positive
from geo3d.sim.layout import Layout, _check_range, footprints_overlap

__all__ = ["MotionConfig", "MotionState", "Traffic"]

_VEHICLE, _PARKED, _PEDESTRIAN = 0, 1, 2


@dataclass(frozen=True)
class MotionConfig:
    """Speeds and manoeuvring limits of the road users.

    Args:
        car_speed: desired speed range of moving cars, m/s (default (0, 15)).
        cyclist_speed: m/s (default (3, 7)).
        pedestrian_speed: m/s (default (1.0, 1.6)).
        ego_speed: desired speed range of the ego vehicle, m/s (default (4, 12)).
        max_accel: IDM maximum acceleration, m/s^2 (default 1.5).
        comfortable_decel: IDM comfortable deceleration, m/s^2 (default 2.0).
        max_decel: hardest braking, m/s^2 (default 8.0).
        max_curvature: steering limit of vehicles, 1/m (default 0.05: 20 m radius).
        heading_noise: pedestrians' heading random walk, rad/sqrt(s) (default 0.3).
    """

    car_speed: tuple[float, float] = (0.0, 15.0)
    cyclist_speed: tuple[float, float] = (3.0, 7.0)
    pedestrian_speed: tuple[float, float] = (1.0, 1.6)
    ego_speed: tuple[float, float] = (4.0, 12.0)
    max_accel: float = 1.5
    comfortable_decel: float = 2.0
    max_decel: float = 8.0
    max_curvature: float = 0.05
    heading_noise: float = 0.3

    def __post_init__(self) -> None:
        for name in ("car_speed", "cyclist_speed", "pedestrian_speed", "ego_speed"):
            _check_range(getattr(self, name), name, integer=False)
        for name in ("max_accel", "comfortable_decel", "max_decel", "max_curvature"):
            check_positive(getattr(self, name), name)
        check_positive(self.heading_noise, "heading_noise", allow_zero=True)


@dataclass(frozen=True, eq=False)
class MotionState:
    """Road coordinates and speeds of all agents; the ego vehicle is the last row.

    Attributes:
        s, d, psi: arc length, lateral offset and heading relative to the road, ``[n+1]``.
        v: speed in m/s, ``[n+1]``.
    """

    s: np.ndarray
    d: np.ndarray
    psi: np.ndarray
    v: np.ndarray


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


class Traffic:
    """The kinematic model of a layout's agents plus its ego vehicle.

    Args:
        layout: the scene whose ``agents`` (rows ``0..n-1``) and ``ego`` (row ``n``) move.
        config: speeds and limits.
        rng: draws each agent's desired speed.
    """

    def __init__(self, layout: Layout, config: MotionConfig, rng: np.random.Generator) -> None:
        if not isinstance(config, MotionConfig):
            raise InvalidInputError(f"config must be a MotionConfig, got {type(config).__name__}")
        self.layout = layout
        self.config = config
        agents = (*layout.agents, layout.ego)
        self.kind = np.array([_PARKED if a.behaviour == "parked" else
                              _PEDESTRIAN if a.cls == "pedestrian" else _VEHICLE
                              for a in agents])
        ranges = {"car": config.car_speed, "cyclist": config.cyclist_speed,
                  "pedestrian": config.pedestrian_speed}
        self.v_des = np.array([0.0 if a.behaviour == "parked" else
                               rng.uniform(*(config.ego_speed if a.behaviour == "ego"
                                             else ranges[a.cls])) for a in agents])
        self.lane_d = np.array([a.lane_d for a in agents])
        self.direction = np.array([a.direction for a in agents], float)
        self.length = np.array([a.length for a in agents])
        self.width = np.array([a.width for a in agents])
        self.tilt = np.array([a.tilt for a in agents])
        self.min_gap = np.where(np.array([a.cls for a in agents]) == "car", 2.0, 1.0)
        self._initial = MotionState(np.array([a.s for a in agents]),
                                    np.array([a.d for a in agents]),
                                    np.array([a.psi for a in agents]), self.v_des.copy())

    def initial_state(self) -> MotionState:
        """The state as the layout placed the agents, each at its desired speed."""
        return self._initial

    def poses(self, state: MotionState) -> np.ndarray:
        """World-from-local poses ``[n+1, 4, 4]`` of the agents and (last) the ego vehicle."""
        return self.layout.agent_poses(state.s, state.d, state.psi, self.length, self.width,
                                       self.tilt)

    def footprints(self, state: MotionState) -> np.ndarray:
        """World footprints ``[n+1, 5]`` = (x, y, length, width, yaw)."""
        road = self.layout.road
        x, y = road.to_world(state.s, state.d)
        return np.stack([x, y, self.length, self.width, road.heading(state.s) + state.psi], 1)

    def _idm(self, state: MotionState) -> np.ndarray:
        """IDM acceleration of every agent w.r.t. the nearest road user ahead in its lane."""
        c = self.config
        s, d, psi, v = state.s, state.d, state.psi, state.v
        lat = np.abs(self.length * np.sin(psi)) + np.abs(self.width * np.cos(psi))
        lon = np.abs(self.length * np.cos(psi)) + np.abs(self.width * np.sin(psi))
        ahead = self.direction[:, None] * (s[None, :] - s[:, None])  # [i, j]
        gap = ahead - (self.length[:, None] + lon[None, :]) / 2
        corridor = np.abs(d[None, :] - d[:, None]) < (self.width[:, None] + lat[None, :]) / 2 + 0.3
        blocking = corridor & (ahead > 0) & ~np.eye(len(s), dtype=bool)
        gap = np.where(blocking, np.maximum(gap, 0.1), np.inf)
        j = np.argmin(gap, axis=1)
        g = gap[np.arange(len(s)), j]
        v_lead = np.where(np.isfinite(g), self.direction * v[j] * np.cos(psi[j]), 0.0)
        dv = v - v_lead
        s_star = self.min_gap + np.maximum(0.0, v * 1.2 + v * dv / (
            2 * np.sqrt(c.max_accel * c.comfortable_decel)))
        free = 1 - (v / np.maximum(self.v_des, 1e-6)) ** 4
        interaction = np.where(np.isfinite(g), (s_star / g) ** 2, 0.0)
        return np.clip(c.max_accel * (free - interaction), -c.max_decel, c.max_accel)

    def step(self, state: MotionState, dt: float, rng: np.random.Generator) -> MotionState:
        """Advance every agent by ``dt`` seconds (returns a new state)."""
        check_positive(dt, "dt")
        c, road = self.config, self.layout.road
        veh, ped = self.kind == _VEHICLE, self.kind == _PEDESTRIAN
        v = state.v.copy()
        v[veh] = np.clip(v + self._idm(state) * dt, 0.0, np.maximum(self.v_des, v))[veh]
        v[ped] = self.v_des[ped]
        # Steer towards the lane: reference heading along the travel direction, corrected
        # towards lane_d (steeper for pedestrians, so crossing ones head for the far side).
        ref = np.where(self.direction > 0, 0.0, np.pi)
        k_lat = np.where(ped, 1.0, 0.3)
        target = ref - self.direction * np.arctan(k_lat * (state.d - self.lane_d))
        err = _wrap(target - state.psi)
        turn = np.where(ped, 0.5 * err, np.clip(2.0 * err, -v * c.max_curvature,
                                                 v * c.max_curvature))
        noise = rng.normal(0.0, 1.0, len(v)) * np.sqrt(dt)
        turn = turn + np.where(ped, c.heading_noise, 0.0) * noise / dt
        psi = _wrap(state.psi + turn * dt * (self.kind != _PARKED))
        ds = v * np.cos(psi) / (1 - road.curvature * state.d) * dt
        new = MotionState(state.s + ds, state.d + v * np.sin(psi) * dt, psi, v)
        return self._resolve_collisions(state, new, rng)

    def _resolve_collisions(self, old: MotionState, new: MotionState,
                            rng: np.random.Generator) -> MotionState:
        """Keep each agent whose move would overlap something where it was (stopped)."""
        boxes = self.footprints(old)
        cand = self.footprints(new)
        statics = self.layout.static_footprints
        s, d, psi, v = old.s.copy(), old.d.copy(), new.psi.copy(), new.v.copy()
        for i in np.flatnonzero(self.kind != _PARKED):
            others = np.concatenate([np.delete(boxes, i, axis=0), statics])
            grown = cand[i] + np.array([0, 0, 0.1, 0.1, 0])
            if footprints_overlap(grown, others).any():
                v[i], psi[i] = 0.0, old.psi[i]
                if self.kind[i] == _PEDESTRIAN:  # turn on the spot to find a way around
                    turned = boxes[i].copy()
                    turned[4] += rng.uniform(-np.pi / 2, np.pi / 2)
                    if not footprints_overlap(turned + [0, 0, 0.1, 0.1, 0], others).any():
                        psi[i] = _wrap(old.psi[i] + turned[4] - boxes[i][4])
                        boxes[i] = turned
            else:
                s[i], d[i], boxes[i] = new.s[i], new.d[i], cand[i]
        return MotionState(s, d, psi, v)
