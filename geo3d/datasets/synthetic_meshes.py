"""SyntheticMeshes: posed procedural humanoids with dense correspondence and part labels.

A FAUST-like benchmark that is generated offline and deterministically. Every item is the
template of :mod:`geo3d.sim.humanoid` (about 1,240 vertices, one connectivity) in a random
pose (linear blend skinning), with smooth non-rigid noise, a random isotropic scale and a
random rigid motion. Labels per vertex: ``corr``, the template vertex id (dense
correspondence as classification, as on FAUST), and ``part``, the bone (10 parts,
:data:`geo3d.sim.humanoid.HUMANOID_PARTS`).

With ``retriangulate=True`` each mesh is re-triangulated (Open3D Loop subdivision, jitter
and quadric decimation, :func:`geo3d.sim.humanoid.retriangulate`): vertices and
connectivity differ from the template's and each vertex is labelled with its nearest
posed template vertex. Use it on the test split to show that a model does not rely on the
connectivity.

Input features ``x``: ``features="curvature"`` (default) gives
:func:`geo3d.geometry.mesh.curvature_features`, two scale-, rotation- and gauge-invariant
curvature scalars of the one-ring; ``features="hks"`` gives the 16-column heat kernel
signature of :func:`geo3d.geometry.spectral.heat_kernel_signature`, invariant too and far
less sensitive to re-triangulation (measured on 2 posed meshes: the curvature scalars of
matching vertices differ about 3x more after re-triangulation than between two poses;
the HKS differs no more than between poses). Vertex heights or coordinates would not be
invariant to the random rigid motion; ``features="none"`` leaves ``x`` out (a model then
uses a constant input).

Items are seeded by ``numpy.random.SeedSequence([seed, split_code, index])``, so they do
not depend on access order and the splits never share a pose.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch_geometric.data import Data

from geo3d.datasets._common import _SPLIT_CODES, CachedItems, check_bool, check_choice, check_int
from geo3d.errors import InvalidInputError
from geo3d.datasets.features import MESH_FEATURES, mesh_features
from geo3d.sim.humanoid import HUMANOID_PARTS, humanoid_template, pose_humanoid, retriangulate

__all__ = ["SyntheticMeshes"]

_TASKS = ("correspondence", "part_segmentation")
_ROTATIONS = ("none", "so3")


class SyntheticMeshes(CachedItems):
    """Posed humanoid meshes of one template: correspondence and part segmentation.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint poses).
        size: number of meshes (>= 1).
        seed: base seed (default 0).
        task: ``"correspondence"`` (default; ``y`` = template vertex id) or
            ``"part_segmentation"`` (``y`` = part id).
        retriangulate: re-triangulate each mesh (default False).
        rotate: ``"so3"`` (default: uniform random rotation and a translation up to 1 m)
            or ``"none"``.
        pose_scale: fraction of the joint limits used (default 1).
        noise: non-rigid noise amplitude in metres (default 0.01).
        scale_range: isotropic scale ``(low, high)`` (default ``(0.9, 1.1)``).
        features: ``"curvature"`` (default, ``x`` [V, 2]), ``"hks"`` (``x`` [V, 16]) or
            ``"none"`` (``x`` None).
        cache: keep built items in memory (default False).

    Shapes:
        ``dataset[i]``: ``Data`` with ``pos`` [V, 3] float32, ``face`` [3, T] long, ``x``
        [V, 2] or [V, 16] float32 or None, ``y`` [V] long, ``corr`` [V] long, ``part`` [V] long.
    """

    PART_NAMES: tuple[str, ...] = HUMANOID_PARTS
    NUM_PARTS: int = len(HUMANOID_PARTS)

    def __init__(self, split: str, size: int, seed: int = 0, task: str = "correspondence",
                 retriangulate: bool = False, rotate: str = "so3", pose_scale: float = 1.0,
                 noise: float = 0.01, scale_range: tuple[float, float] = (0.9, 1.1),
                 features: str = "curvature", cache: bool = False) -> None:
        self.split = check_choice("split", split, tuple(_SPLIT_CODES))
        self.size = check_int("size", size, 1)
        self.seed = check_int("seed", seed, 0)
        self.task = check_choice("task", task, _TASKS)
        self.retriangulate = check_bool("retriangulate", retriangulate)
        self.rotate = check_choice("rotate", rotate, _ROTATIONS)
        self.features = check_choice("features", features, tuple(MESH_FEATURES))
        for name, value, hi in (("pose_scale", pose_scale, 1.0), ("noise", noise, 0.05)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= hi:
                raise InvalidInputError(f"{name} must be a number in [0, {hi}], got {value!r}")
        self.pose_scale, self.noise = float(pose_scale), float(noise)
        try:
            lo, hi = (float(s) for s in scale_range)
        except (TypeError, ValueError):
            raise InvalidInputError(f"scale_range must be two numbers, got {scale_range!r}") from None
        if not 0 < lo <= hi < float("inf"):
            raise InvalidInputError(f"scale_range must satisfy 0 < low <= high, got {scale_range!r}")
        self.scale_range = (lo, hi)
        super().__init__(check_bool("cache", cache))

    @property
    def num_vertices(self) -> int:
        """Vertices of the template (the classes of the correspondence task)."""
        return len(humanoid_template().vertices)

    @property
    def num_classes(self) -> int:
        """Targets of the task: template vertices, or parts."""
        return self.num_vertices if self.task == "correspondence" else self.NUM_PARTS

    def __len__(self) -> int:
        return self.size

    def _load(self, index: int) -> Data:
        template = humanoid_template()
        pose_seq, mesh_seq, rigid_seq = np.random.SeedSequence(
            [self.seed, _SPLIT_CODES[self.split], index]).spawn(3)
        verts = pose_humanoid(np.random.default_rng(pose_seq), self.pose_scale, self.noise, template)
        faces = template.faces
        corr = np.arange(len(verts), dtype=np.int64)
        if self.retriangulate:
            verts, faces, corr = retriangulate(verts, faces, int(mesh_seq.generate_state(1)[0]))
        rng = np.random.default_rng(rigid_seq)
        verts = verts * rng.uniform(*self.scale_range)
        if self.rotate == "so3":
            verts = verts @ Rotation.random(random_state=rng).as_matrix().T + rng.uniform(-1, 1, 3)
        pos = torch.from_numpy(verts.astype(np.float32))
        face = torch.from_numpy(np.ascontiguousarray(faces.T))
        corr = torch.from_numpy(corr)
        part = torch.from_numpy(template.part[corr.numpy()])
        x = mesh_features(pos, face, self.features)
        return Data(pos=pos, face=face, x=x, y=corr if self.task == "correspondence" else part,
                    corr=corr, part=part)

    @property
    def num_features(self) -> int:
        """Columns of ``x`` (0 with ``features="none"``)."""
        return MESH_FEATURES[self.features]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, size={self.size}, task={self.task!r}, "
                f"retriangulate={self.retriangulate}, rotate={self.rotate!r})")

