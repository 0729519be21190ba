"""Constant-velocity Kalman filter of 3D boxes, vectorised over tracks with numpy.

The filter of AB3DMOT (Weng et al., "3D Multi-Object Tracking: A Baseline and New
Evaluation Metrics", IROS 2020): state ``(x, y, z, yaw, l, w, h, vx, vy, vz)``, the box
measured directly (``H = [I_7 0]``), the centre moving by the velocity once per frame.
Written here with numpy rather than ``filterpy``: filterpy runs one filter per object in
Python, while every step below is a batched matrix operation over all tracks at once
(``np.matmul`` / ``np.linalg.solve`` on ``[T, 10, 10]`` stacks), which is what makes the
tracker fast with tens of objects.

Yaw is an angle: innovations are wrapped to ``[-pi, pi)``, and when a detection points
the opposite way of its track (difference over ``pi/2``) the track's yaw is flipped by
``pi`` first (AB3DMOT's orientation correction: detectors often confuse front and back),
so a box never "spins" through the filter. Yaws stay wrapped to ``[-pi, pi)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geo3d.geometry.validation import check_positive

__all__ = ["KalmanConfig", "KalmanState", "wrap_angle", "kf_init", "kf_predict", "kf_update"]

DIM_X, DIM_Z = 10, 7
_F = np.eye(DIM_X)
_F[0, 7] = _F[1, 8] = _F[2, 9] = 1.0
# geo3d boxes are (x, y, z, l, w, h, yaw); the state starts (x, y, z, yaw, l, w, h).
_BOX_TO_STATE = [0, 1, 2, 6, 3, 4, 5]
_STATE_TO_BOX = [0, 1, 2, 4, 5, 6, 3]


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to ``[-pi, pi)``."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True)
class KalmanConfig:
    """Noise model of the filter (AB3DMOT's values are the defaults; units m, rad, frames).

    Args:
        init_var: initial variance of the measured box entries (default 10).
        init_velocity_var: initial variance of the unobserved velocity (default 1e4).
        process_var: process noise of the box entries per frame (default 1).
        process_velocity_var: process noise of the velocity per frame (default 0.01).
        measurement_var: measurement noise of every box entry (default 1).
    """

    init_var: float = 10.0
    init_velocity_var: float = 1e4
    process_var: float = 1.0
    process_velocity_var: float = 0.01
    measurement_var: float = 1.0

    def __post_init__(self) -> None:
        for name in ("init_var", "init_velocity_var", "process_var", "process_velocity_var",
                     "measurement_var"):
            check_positive(getattr(self, name), name)

    def diag(self, box: float, velocity: float) -> np.ndarray:
        return np.diag([box] * DIM_Z + [velocity] * (DIM_X - DIM_Z))


@dataclass
class KalmanState:
    """Means ``[T, 10]`` and covariances ``[T, 10, 10]`` (float64) of ``T`` tracks."""

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def empty(cls) -> "KalmanState":
        return cls(np.zeros((0, DIM_X)), np.zeros((0, DIM_X, DIM_X)))

    def __len__(self) -> int:
        return self.mean.shape[0]

    def select(self, keep: np.ndarray) -> "KalmanState":
        return KalmanState(self.mean[keep], self.cov[keep])

    def concat(self, other: "KalmanState") -> "KalmanState":
        return KalmanState(np.concatenate([self.mean, other.mean]),
                           np.concatenate([self.cov, other.cov]))

    def boxes(self) -> np.ndarray:
        """The tracks' boxes ``[T, 7]`` ``(x, y, z, l, w, h, yaw)``."""
        return self.mean[:, _STATE_TO_BOX]

    def velocity(self) -> np.ndarray:
        """The tracks' velocities ``[T, 3]`` in metres per frame."""
        return self.mean[:, DIM_Z:]


def kf_init(boxes: np.ndarray, config: KalmanConfig) -> KalmanState:
    """New tracks at ``boxes`` ``[M, 7]`` ``(x, y, z, l, w, h, yaw)`` with zero velocity."""
    m = boxes.shape[0]
    mean = np.zeros((m, DIM_X))
    mean[:, :DIM_Z] = boxes[:, _BOX_TO_STATE]
    mean[:, 3] = wrap_angle(mean[:, 3])
    cov = np.broadcast_to(config.diag(config.init_var, config.init_velocity_var),
                          (m, DIM_X, DIM_X)).copy()
    return KalmanState(mean, cov)


def kf_predict(state: KalmanState, config: KalmanConfig) -> KalmanState:
    """One frame ahead: ``x <- F x``, ``P <- F P F^T + Q``."""
    q = config.diag(config.process_var, config.process_velocity_var)
    mean = state.mean @ _F.T
    cov = _F @ state.cov @ _F.T + q
    return KalmanState(mean, cov)


def kf_update(state: KalmanState, boxes: np.ndarray, config: KalmanConfig) -> KalmanState:
    """Correct every track ``i`` with its measured box ``boxes[i]`` (``[T, 7]``, geo3d order).

    The track's yaw is first flipped by ``pi`` where the detection points the other way
    (difference over ``pi/2``), then the yaw innovation is wrapped to ``[-pi/2, pi/2]``.
    """
    mean = state.mean.copy()
    boxes = boxes[:, _BOX_TO_STATE]
    diff = wrap_angle(boxes[:, 3] - mean[:, 3])
    flip = np.abs(diff) > np.pi / 2
    mean[:, 3] = wrap_angle(mean[:, 3] + np.where(flip, np.pi, 0.0))
    innovation = boxes - mean[:, :DIM_Z]
    innovation[:, 3] = wrap_angle(innovation[:, 3])
    p = state.cov
    s = p[:, :DIM_Z, :DIM_Z] + config.measurement_var * np.eye(DIM_Z)
    gain = np.linalg.solve(s, p[:, :DIM_Z, :]).transpose(0, 2, 1)  # P H^T S^-1, S symmetric
    mean = mean + np.einsum("tij,tj->ti", gain, innovation)
    mean[:, 3] = wrap_angle(mean[:, 3])
    cov = p - gain @ p[:, :DIM_Z, :]
    cov = 0.5 * (cov + cov.transpose(0, 2, 1))
    return KalmanState(mean, cov)
