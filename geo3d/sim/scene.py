"""A scene of placed, labelled triangle meshes that sensors ray-cast.

Ray casting is Open3D's ``open3d.t.geometry.RaycastingScene`` (Embree BVH): one geometry
per placed mesh, and a geometry id -> (class, instance, reflectivity) table to label hits.
A :class:`Scene` is immutable; :meth:`Scene.moved` returns a new scene with some meshes
re-posed, reusing the cached world-frame vertices of the others, which is what a sequence
does every frame (building the BVH again is cheap; making meshes is not).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import open3d as o3d
import trimesh

from geo3d.errors import InvalidInputError

__all__ = ["SceneMesh", "RayHits", "Scene", "SeedLike"]

_INVALID_ID = o3d.t.geometry.RaycastingScene.INVALID_ID

SeedLike = Union[int, np.random.SeedSequence, np.random.Generator]
"""What the simulator accepts as a source of randomness (a Generator is advanced)."""


def _as_generator(seed: object, name: str = "rng", allow_none: bool = True) -> np.random.Generator:
    """A Generator from a Generator, SeedSequence, non-negative int or (if allowed) None,
    which means the fixed seed 0, so that results are reproducible by default."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if seed is None and allow_none:
        return np.random.default_rng(0)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise InvalidInputError(f"{name} must be a numpy Generator, SeedSequence or non-negative "
                            f"int{' or None' if allow_none else ''}, got {seed!r}")


def _check_transform(t: object, name: str) -> np.ndarray:
    """Return ``t`` as a read-only float64 rigid 4x4 transform, or raise."""
    a = np.array(t, dtype=np.float64, copy=True)
    if a.shape != (4, 4):
        raise InvalidInputError(f"{name} must have shape (4, 4), got {a.shape}")
    if not np.isfinite(a).all():
        raise InvalidInputError(f"{name} contains NaN or Inf values")
    r = a[:3, :3]
    if np.abs(r.T @ r - np.eye(3)).max() > 1e-5 or np.linalg.det(r) < 0:
        raise InvalidInputError(f"{name} must be a rigid transform (rotation + translation)")
    if (a[3] != (0, 0, 0, 1)).any():
        raise InvalidInputError(f"{name} must have last row (0, 0, 0, 1), got {a[3].tolist()}")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SceneMesh:
    """A triangle mesh placed in the world with a semantic label.

    Attributes:
        vertices: local-frame vertices, float64 ``[V, 3]`` (a read-only copy).
        faces: triangles, int64 ``[T, 3]`` indexing ``vertices``.
        label: semantic class id (for the street simulator an index into ``CLASSES``).
        instance: object id, or -1 for background (ground, buildings...).
        transform: world-from-local rigid ``[4, 4]`` (default identity).
        reflectivity: surface reflectivity in [0, 1] that LiDAR intensity scales with
            (default 0.5).
    """

    vertices: np.ndarray
    faces: np.ndarray
    label: int
    instance: int = -1
    transform: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(4))
    reflectivity: float = 0.5

    def __post_init__(self) -> None:
        v = np.array(self.vertices, dtype=np.float64, copy=True)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
            raise InvalidInputError(f"vertices must have shape [V, 3] with V >= 1, got {v.shape}")
        if not np.isfinite(v).all():
            raise InvalidInputError("vertices contains NaN or Inf values")
        f = np.array(self.faces, copy=True)
        if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.dtype.kind not in "iu":
            raise InvalidInputError(f"faces must be an integer [T, 3] array with T >= 1, got "
                                    f"shape {f.shape} dtype {f.dtype}")
        if f.min() < 0 or f.max() >= len(v):
            raise InvalidInputError(f"faces must index 0..{len(v) - 1}, got {f.min()}..{f.max()}")
        f = f.astype(np.int64)
        for name, value, low in (("label", self.label, 0), ("instance", self.instance, -1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
        rho = float(self.reflectivity)
        if not 0.0 <= rho <= 1.0:
            raise InvalidInputError(f"reflectivity must be in [0, 1], got {self.reflectivity!r}")
        v.setflags(write=False)
        f.setflags(write=False)
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)
        object.__setattr__(self, "label", int(self.label))
        object.__setattr__(self, "instance", int(self.instance))
        object.__setattr__(self, "transform", _check_transform(self.transform, "transform"))
        object.__setattr__(self, "reflectivity", rho)

    @classmethod
    def from_trimesh(cls, mesh: trimesh.Trimesh, label: int, instance: int = -1,
                     transform: Optional[np.ndarray] = None,
                     reflectivity: float = 0.5) -> "SceneMesh":
        """Wrap a ``trimesh.Trimesh`` (its vertices are copied, the mesh is not kept)."""
        if not isinstance(mesh, trimesh.Trimesh):
            raise InvalidInputError(f"mesh must be a trimesh.Trimesh, got {type(mesh).__name__}")
        return cls(np.asarray(mesh.vertices), np.asarray(mesh.faces), label, instance,
                   np.eye(4) if transform is None else transform, reflectivity)

    def world_vertices(self) -> np.ndarray:
        """Vertices in the world frame, float64 ``[V, 3]``."""
        return self.vertices @ self.transform[:3, :3].T + self.transform[:3, 3]


@dataclass(frozen=True, eq=False)
class RayHits:
    """The first hits of a batch of rays; rays that hit nothing are left out.

    Attributes (``M`` hits):
        ray: index of the ray each hit belongs to, int64 ``[M]``, ascending.
        distance: hit distance along the (normalised) ray, float32 ``[M]``.
        point: hit point in the world frame, float32 ``[M, 3]``.
        direction: unit direction of the ray, world frame, float32 ``[M, 3]``.
        normal: unit normal of the hit triangle (world frame, winding-dependent sign),
            float32 ``[M, 3]``.
        label: semantic class of the hit mesh, int64 ``[M]``.
        instance: instance id of the hit mesh (-1 background), int64 ``[M]``.
        reflectivity: reflectivity of the hit mesh, float32 ``[M]``.
        mesh: index of the hit mesh in ``Scene.meshes``, int64 ``[M]``.
    """

    ray: np.ndarray
    distance: np.ndarray
    point: np.ndarray
    direction: np.ndarray
    normal: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    reflectivity: np.ndarray
    mesh: np.ndarray

    def __len__(self) -> int:
        return len(self.ray)


class Scene:
    """An immutable set of placed meshes, ray-cast with Open3D's RaycastingScene.

    Args:
        meshes: the placed meshes; geometry id ``i`` of the ray-casting scene is
            ``meshes[i]``.

    Example:
        >>> scene = Scene([SceneMesh.from_trimesh(trimesh.creation.box(), label=0)])
        >>> hits = scene.cast(np.array([[0, 0, 5.0]]), np.array([[0, 0, -1.0]]))
        >>> float(hits.distance[0])
        4.5
    """

    def __init__(self, meshes: Sequence[SceneMesh], *, _world: Optional[list] = None) -> None:
        meshes = tuple(meshes)
        for i, m in enumerate(meshes):
            if not isinstance(m, SceneMesh):
                raise InvalidInputError(f"meshes[{i}] must be a SceneMesh, got {type(m).__name__}")
        self._meshes = meshes
        self._world = _world if _world is not None else [None] * len(meshes)
        self._labels = np.array([m.label for m in meshes], dtype=np.int64)
        self._instances = np.array([m.instance for m in meshes], dtype=np.int64)
        self._rho = np.array([m.reflectivity for m in meshes], dtype=np.float32)
        self._raycaster: Optional[o3d.t.geometry.RaycastingScene] = None

    @property
    def meshes(self) -> tuple[SceneMesh, ...]:
        """The placed meshes, in geometry-id order."""
        return self._meshes

    @property
    def labels(self) -> np.ndarray:
        """Geometry id -> semantic class table, int64 ``[len(meshes)]``."""
        return self._labels.copy()

    @property
    def instances(self) -> np.ndarray:
        """Geometry id -> instance id table (-1 background), int64 ``[len(meshes)]``."""
        return self._instances.copy()

    def __len__(self) -> int:
        return len(self._meshes)

    def world_vertices(self, index: int) -> np.ndarray:
        """World-frame vertices of ``meshes[index]``, float32 ``[V, 3]`` (cached, read-only)."""
        if self._world[index] is None:
            w = self._meshes[index].world_vertices().astype(np.float32)
            w.setflags(write=False)
            self._world[index] = w
        return self._world[index]

    def moved(self, transforms: Mapping[int, np.ndarray]) -> "Scene":
        """A new scene where ``meshes[i]`` has world-from-local ``transforms[i]``.

        The other meshes (and their cached world vertices) are shared; ``self`` is unchanged.
        """
        meshes = list(self._meshes)
        world = [self.world_vertices(i) if i not in transforms else None
                 for i in range(len(meshes))]
        for i, t in transforms.items():
            if not isinstance(i, (int, np.integer)) or not 0 <= i < len(meshes):
                raise InvalidInputError(f"transforms key must be a mesh index in "
                                        f"0..{len(meshes) - 1}, got {i!r}")
            meshes[i] = dataclasses.replace(meshes[i], transform=t)
        return Scene(meshes, _world=world)

    def _raycasting_scene(self) -> o3d.t.geometry.RaycastingScene:
        if self._raycaster is None:
            rc = o3d.t.geometry.RaycastingScene()
            for i, m in enumerate(self._meshes):
                gid = rc.add_triangles(o3d.core.Tensor(self.world_vertices(i)),
                                       o3d.core.Tensor(m.faces.astype(np.uint32)))
                assert gid == i, "Open3D assigns geometry ids in insertion order"
            self._raycaster = rc
        return self._raycaster

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        """Cast rays and return their first hits.

        Args:
            origins: ray origins in the world frame, ``[R, 3]`` or ``[3]`` (shared).
            directions: ray directions, ``[R, 3]``, any non-zero length (normalised here).

        Returns:
            :class:`RayHits` for the rays that hit a mesh, in ray order.
        """
        d = np.asarray(directions, dtype=np.float32)
        if d.ndim != 2 or d.shape[1] != 3:
            raise InvalidInputError(f"directions must have shape [R, 3], got {d.shape}")
        o = np.asarray(origins, dtype=np.float32)
        if o.shape != (3,) and o.shape != d.shape:
            raise InvalidInputError(f"origins must have shape [3] or {list(d.shape)}, got "
                                    f"{list(o.shape)}")
        if not (np.isfinite(o).all() and np.isfinite(d).all()):
            raise InvalidInputError("origins and directions must be finite")
        norm = np.sqrt(np.einsum("ij,ij->i", d, d))
        if len(d) and norm.min() == 0:
            raise InvalidInputError("directions must be non-zero")
        if len(self._meshes) == 0 or len(d) == 0:
            return _no_hits()
        rays = np.empty((len(d), 6), np.float32)
        rays[:, :3] = o
        np.divide(d, norm[:, None], out=rays[:, 3:])
        out = self._raycasting_scene().cast_rays(o3d.core.Tensor.from_numpy(rays))
        gid = out["geometry_ids"].numpy()
        ray = np.flatnonzero(gid != _INVALID_ID)
        g = gid[ray].astype(np.int64)
        t = out["t_hit"].numpy()[ray]
        hit_rays = rays[ray]
        return RayHits(ray=ray, distance=t, point=hit_rays[:, :3] + hit_rays[:, 3:] * t[:, None],
                       direction=hit_rays[:, 3:], normal=out["primitive_normals"].numpy()[ray],
                       label=self._labels[g], instance=self._instances[g],
                       reflectivity=self._rho[g], mesh=g)


def _no_hits() -> RayHits:
    z = np.zeros(0, dtype=np.int64)
    f = np.zeros(0, dtype=np.float32)
    v = np.zeros((0, 3), np.float32)
    return RayHits(z, f, v, v, v, z, z, f, z)
