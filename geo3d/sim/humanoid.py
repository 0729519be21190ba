"""A procedural articulated humanoid: one template mesh, posed by linear blend skinning.

The template is the zero level set of a smooth union of capsules (one chain per bone, a
T-pose 1.8 m tall, facing +x, up +z). Like a body it is mirror-symmetric (left/right,
``y -> -y``) but has a front: chest, nose, thumbs, biceps, thigh muscles and feet face +x.
Without a front, a half turn about the vertical axis maps the left arm onto the right one;
no model that respects the surface's orientation can then tell them apart from the shape
near them, only from the triangulation, which a re-triangulated mesh does not keep. Open3D
builds the surface: points on the level set (Newton-projected, with the implicit gradient
as normal) go through screened Poisson reconstruction
(``TriangleMesh.create_from_point_cloud_poisson``, Kazhdan and Hoppe 2013) at a coarse
octree depth; close vertices are merged and twenty rounds of tangential smoothing,
re-projected onto the level set, even out the triangles (our own ~15 lines: Open3D has no
isotropic remesher). The result is a closed, consistently oriented, genus-0 mesh of about
1,240 vertices, built once per process (about 5 s) and cached.

Posing: each bone rotates about its joint (limits in :data:`JOINT_LIMITS`, degrees, as
intrinsic x-y-z Euler angles), composed down the kinematic tree; vertices move by linear
blend skinning with weights ``softmax(-d_b / 0.02 m)`` over their distance ``d_b`` to each
bone's capsules. Non-rigid noise is a smooth random displacement along the normals (a sum
of random plane waves, amplitude ``noise`` metres). Part labels are the nearest bone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Optional

import numpy as np
from scipy.spatial.transform import Rotation

from geo3d.errors import InvalidInputError

__all__ = ["HUMANOID_PARTS", "JOINT_LIMITS", "HumanoidTemplate", "humanoid_template",
           "pose_humanoid", "retriangulate"]

#: Bones (= part labels) in order; a bone's parent is given in ``_PARENTS``.
HUMANOID_PARTS: tuple[str, ...] = (
    "torso", "head", "left_upper_arm", "left_forearm", "right_upper_arm", "right_forearm",
    "left_thigh", "left_shin", "right_thigh", "right_shin")
_PARENTS = (-1, 0, 0, 2, 0, 4, -1, 6, -1, 8)
_JOINTS = np.array([
    (0, 0, 0.95), (0, 0, 1.45), (0, 0.2, 1.4), (0, 0.46, 1.4), (0, -0.2, 1.4), (0, -0.46, 1.4),
    (0, 0.11, 0.95), (0, 0.11, 0.5), (0, -0.11, 0.95), (0, -0.11, 0.5)], dtype=np.float64)
#: (bone, a, b, radius): the capsules, in metres.
_CAPSULES = (
    (0, (0, -0.07, 1.0), (0, -0.07, 1.36), 0.12), (0, (0, 0.07, 1.0), (0, 0.07, 1.36), 0.12),
    (0, (0.05, 0, 1.18), (0.05, 0, 1.30), 0.11),  # chest
    (1, (0, 0, 1.36), (0, 0, 1.56), 0.05), (1, (0.0, 0, 1.64), (0.02, 0, 1.66), 0.10),
    (1, (0.08, 0, 1.62), (0.13, 0, 1.60), 0.035),  # nose
    (2, (0, 0.2, 1.4), (0, 0.46, 1.4), 0.05), (2, (0.02, 0.26, 1.4), (0.02, 0.40, 1.4), 0.045),
    (3, (0, 0.46, 1.4), (0, 0.72, 1.4), 0.04), (3, (0, 0.72, 1.4), (0, 0.8, 1.4), 0.035),
    (3, (0.02, 0.72, 1.4), (0.09, 0.77, 1.4), 0.03),  # thumb
    (4, (0, -0.2, 1.4), (0, -0.46, 1.4), 0.05),
    (4, (0.02, -0.26, 1.4), (0.02, -0.40, 1.4), 0.045),
    (5, (0, -0.46, 1.4), (0, -0.72, 1.4), 0.04), (5, (0, -0.72, 1.4), (0, -0.8, 1.4), 0.035),
    (5, (0.02, -0.72, 1.4), (0.09, -0.77, 1.4), 0.03),
    (6, (0, 0.11, 0.95), (0, 0.11, 0.5), 0.07),
    (6, (0.02, 0.11, 0.6), (0.02, 0.11, 0.85), 0.065),
    (7, (0, 0.11, 0.5), (0, 0.11, 0.08), 0.05), (7, (0, 0.11, 0.08), (0.13, 0.11, 0.04), 0.04),
    (8, (0, -0.11, 0.95), (0, -0.11, 0.5), 0.07),
    (8, (0.02, -0.11, 0.6), (0.02, -0.11, 0.85), 0.065),
    (9, (0, -0.11, 0.5), (0, -0.11, 0.08), 0.05), (9, (0, -0.11, 0.08), (0.13, -0.11, 0.04), 0.04),
)
#: Per bone: (low, high) degrees of the x, y, z rotations about its joint.
JOINT_LIMITS: dict[str, tuple[tuple[float, float], ...]] = {
    "torso": ((-10, 10), (-5, 25), (-20, 20)),
    "head": ((-20, 20), (-15, 25), (-40, 40)),
    "left_upper_arm": ((-70, 30), (-30, 30), (-30, 30)),
    "left_forearm": ((0, 0), (-10, 10), (0, 90)),
    "right_upper_arm": ((-30, 70), (-30, 30), (-30, 30)),
    "right_forearm": ((0, 0), (-10, 10), (-90, 0)),
    "left_thigh": ((-10, 20), (-40, 30), (-10, 10)),
    "left_shin": ((0, 0), (0, 70), (0, 0)),
    "right_thigh": ((-20, 10), (-40, 30), (-10, 10)),
    "right_shin": ((0, 0), (0, 70), (0, 0)),
}
_SMOOTH_K = 0.02  # smooth-union width (m)
_SKIN_SIGMA = 0.02  # skinning softness (m)


class HumanoidTemplate(NamedTuple):
    """The rest-pose template.

    Attributes:
        vertices: ``[V, 3]`` float64 metres. faces: ``[T, 3]`` int64, counter-clockwise
        seen from outside. part: ``[V]`` int64 bone index into :data:`HUMANOID_PARTS`.
        weights: ``[V, B]`` skinning weights (rows sum to 1).
    """

    vertices: np.ndarray
    faces: np.ndarray
    part: np.ndarray
    weights: np.ndarray


def _capsule_distance(p: np.ndarray) -> np.ndarray:
    """Signed distance of points ``[P, 3]`` to every capsule: ``[P, K]``."""
    a = np.array([c[1] for c in _CAPSULES], dtype=np.float64)
    b = np.array([c[2] for c in _CAPSULES], dtype=np.float64)
    r = np.array([c[3] for c in _CAPSULES], dtype=np.float64)
    ab = b - a
    t = np.clip(((p[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    return np.linalg.norm(p[:, None] - (a + t[..., None] * ab), axis=-1) - r


def _sdf(p: np.ndarray) -> np.ndarray:
    d = _capsule_distance(p)
    m = d.min(1, keepdims=True)
    return m[:, 0] - _SMOOTH_K * np.log(np.exp(-(d - m) / _SMOOTH_K).sum(1))


def _grad(p: np.ndarray, h: float = 1e-5) -> np.ndarray:
    return np.stack([(_sdf(p + h * e) - _sdf(p - h * e)) / (2 * h) for e in np.eye(3)], 1)


def _project(p: np.ndarray, steps: int = 4) -> np.ndarray:
    for _ in range(steps):
        g = _grad(p)
        p = p - (_sdf(p) / np.maximum((g * g).sum(1), 1e-12))[:, None] * g
    return p


def _bone_distance(p: np.ndarray) -> np.ndarray:
    d = _capsule_distance(p)
    bone = np.array([c[0] for c in _CAPSULES])
    return np.stack([d[:, bone == k].min(1) for k in range(len(HUMANOID_PARTS))], 1)


@lru_cache(maxsize=1)
def humanoid_template() -> HumanoidTemplate:
    """Build (once per process) the rest-pose humanoid template; see the module docstring."""
    import open3d as o3d
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    p = rng.uniform((-0.2, -0.9, -0.05), (0.25, 0.9, 1.8), (60000, 3))
    p = _project(p[np.abs(_sdf(p)) < 0.05], steps=8)
    n = _grad(p)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
    cloud.normals = o3d.utility.Vector3dVector(n)
    mesh, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        cloud, depth=6, scale=1.6, n_threads=1)
    mesh = mesh.merge_close_vertices(0.3 * 1.85 * 1.6 / 64)
    mesh.remove_degenerate_triangles()
    mesh.remove_unreferenced_vertices()
    v = np.asarray(mesh.vertices, dtype=np.float64).copy()
    f = np.asarray(mesh.triangles, dtype=np.int64).copy()
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), (len(v), len(v))).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    deg = np.asarray(adj.sum(1)).ravel()
    for _ in range(20):  # tangential smoothing, re-projected onto the level set
        g = _grad(v)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        d = adj @ v / deg[:, None] - v
        v = _project(v + 0.5 * (d - (d * g).sum(1, keepdims=True) * g))
    # orient faces outwards (Poisson's orientation follows the normals; check anyway)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    if (fn * _grad(v[f].mean(1))).sum() < 0:
        f = f[:, ::-1].copy()
    dist = _bone_distance(v)
    w = np.exp(-(dist - dist.min(1, keepdims=True)) / _SKIN_SIGMA)
    w /= w.sum(1, keepdims=True)
    return HumanoidTemplate(v, f, dist.argmin(1).astype(np.int64), w)


def _global_transforms(angles: np.ndarray) -> np.ndarray:
    """Per-bone 4x4 transforms from per-bone Euler angles (degrees), ``[B, 4, 4]``."""
    out = np.zeros((len(HUMANOID_PARTS), 4, 4))
    for b, parent in enumerate(_PARENTS):  # parents come before children
        local = np.eye(4)
        rot = Rotation.from_euler("xyz", angles[b], degrees=True).as_matrix()
        local[:3, :3] = rot
        local[:3, 3] = _JOINTS[b] - rot @ _JOINTS[b]
        out[b] = local if parent < 0 else out[parent] @ local
    return out


def pose_humanoid(rng: np.random.Generator, pose_scale: float = 1.0, noise: float = 0.01,
                  template: Optional[HumanoidTemplate] = None) -> np.ndarray:
    """Random pose of the template: vertices ``[V, 3]`` float64 (same faces and order).

    Args:
        rng: the random generator.
        pose_scale: fraction of :data:`JOINT_LIMITS` used (default 1; 0 gives the rest pose).
        noise: amplitude (m) of the smooth displacement along the normals (default 0.01).
        template: default :func:`humanoid_template`.
    """
    if not 0.0 <= pose_scale <= 1.0:
        raise InvalidInputError(f"pose_scale must be in [0, 1], got {pose_scale!r}")
    if not 0.0 <= noise <= 0.05:
        raise InvalidInputError(f"noise must be in [0, 0.05] metres, got {noise!r}")
    t = humanoid_template() if template is None else template
    limits = np.array([JOINT_LIMITS[name] for name in HUMANOID_PARTS], dtype=np.float64)
    angles = rng.uniform(limits[..., 0], limits[..., 1]) * pose_scale
    transforms = _global_transforms(angles)  # [B, 4, 4]
    normals = _grad(t.vertices)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    waves = rng.normal(size=(4, 3)) * 6.0  # wave vectors (1/m): wavelengths ~ 0.3-1 m
    phase = rng.uniform(0, 2 * np.pi, 4)
    field = np.sin(t.vertices @ waves.T + phase).sum(1) / 2.0
    rest = t.vertices + noise * field[:, None] * normals
    homo = np.concatenate([rest, np.ones((len(rest), 1))], 1)
    moved = np.einsum("bij,vj->vbi", transforms[:, :3], homo)  # [V, B, 3]
    return (t.weights[..., None] * moved).sum(1)


def retriangulate(vertices: np.ndarray, faces: np.ndarray, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A different triangulation of the same surface, about as fine as the input.

    Open3D subdivides once (Loop, so the new vertices move off the old faces) and
    decimates back to the input's triangle count (quadric error metric), after a small
    random tangential-free jitter of the subdivided vertices (``seed``) so that two calls
    differ. Each new vertex is labelled with its nearest input vertex.

    Returns:
        ``(vertices [V', 3] float64, faces [T', 3] int64, nearest [V'] int64)``.
    """
    import open3d as o3d
    from scipy.spatial import cKDTree

    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices),
                                     o3d.utility.Vector3iVector(faces.astype(np.int32)))
    fine = mesh.subdivide_loop(number_of_iterations=1)
    v = np.asarray(fine.vertices)
    rng = np.random.default_rng(seed)
    edge = np.linalg.norm(vertices[faces[:, 0]] - vertices[faces[:, 1]], axis=1).mean()
    fine.vertices = o3d.utility.Vector3dVector(v + rng.normal(scale=0.05 * edge, size=v.shape))
    out = fine.simplify_quadric_decimation(target_number_of_triangles=len(faces))
    out.remove_degenerate_triangles()
    out.remove_unreferenced_vertices()
    v2 = np.asarray(out.vertices, dtype=np.float64).copy()
    f2 = np.asarray(out.triangles, dtype=np.int64).copy()
    nearest = cKDTree(vertices).query(v2)[1].astype(np.int64)
    return v2, f2, nearest
