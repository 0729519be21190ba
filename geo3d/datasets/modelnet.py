"""ModelNet40 / ModelNet10 from the original OFF release (Wu et al., 3D ShapeNets, CVPR 2015).

Layout: ``root/<class>/{train,test}/<class>_NNNN.off``. geo3d.io.read_mesh (trimesh)
parses the meshes; trimesh samples the surface by area. Classes are the sorted names of
the folders of ``root`` that hold a ``train`` or ``test`` folder, so the same code reads
ModelNet10 and ModelNet40.

Some ModelNet40 files run the header into the counts on the first line (``OFF490 518
0``); geo3d.io.read_mesh reads those too.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Union

import numpy as np
import torch
import trimesh
from torch_geometric.data import Data

from geo3d.datasets._common import (CachedItems, check_bool, check_choice, check_int,
                                    normalise_unit_sphere, random_rotation)
from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import read_mesh

__all__ = ["ModelNet40", "ModelNet10", "read_modelnet_off"]

PathLike = Union[str, "os.PathLike[str]"]
def read_modelnet_off(path: PathLike) -> Data:
    """Read a ModelNet OFF mesh (merged ``OFF490 518 0`` headers included).

    Returns:
        ``Data(pos [V, 3] float32, face [3, T] long)``, as :func:`geo3d.io.read_mesh`.

    Raises:
        FileFormatError: missing, empty, truncated or corrupt file (naming ``path``).
    """
    return read_mesh(path, format="off")


class ModelNet40(CachedItems):
    """ModelNet shapes as point clouds sampled on the mesh surface.

    Each item samples ``num_points`` points by area on the mesh, seeded by ``seed`` and the
    file's path relative to ``root`` (the same file gives the same points on every run and
    machine), then centres and scales them to the unit sphere.

    Args:
        root: the folder holding the class folders (e.g. ``ModelNet40/``).
        split: ``"train"`` (default) or ``"test"``.
        num_points: points per shape (default 1024).
        seed: base seed of the sampling (default 0).
        normals: put the unit face normals of the sampled points in ``x`` (default False;
            ModelNet's face winding is not consistent, so their sign is unreliable).
        rotate: ``"none"`` (default), ``"z"`` or ``"so3"``: a random rotation per item.
        cache: keep sampled items in memory and hand out copies (default False).

    Shapes:
        ``dataset[i]`` is ``Data(pos [N, 3] float32, x [N, 3] float32 or None, y [1] long)``
        with ``y`` the index of the class in :attr:`classes`.

    Raises:
        InvalidInputError: bad arguments.
        FileFormatError: ``root`` missing or without class folders; unreadable meshes.
    """

    def __init__(self, root: PathLike, split: str = "train", num_points: int = 1024,
                 seed: int = 0, normals: bool = False, rotate: str = "none",
                 cache: bool = False) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise InvalidInputError(f"root must be a path, got {type(root).__name__}")
        self.root = Path(root)
        self.split = check_choice("split", split, ("train", "test"))
        self.num_points = check_int("num_points", num_points, 1)
        self.seed = check_int("seed", seed, 0)
        self.normals = check_bool("normals", normals)
        self.rotate = check_choice("rotate", rotate, ("none", "z", "so3"))
        super().__init__(check_bool("cache", cache))
        if not self.root.is_dir():
            raise FileFormatError(f"ModelNet root {str(self.root)!r} is not a folder")
        self.classes: tuple[str, ...] = tuple(sorted(
            d.name for d in self.root.iterdir()
            if d.is_dir() and ((d / "train").is_dir() or (d / "test").is_dir())))
        if not self.classes:
            raise FileFormatError(f"ModelNet root {str(self.root)!r} holds no class folders "
                                  f"with train/ or test/ inside")
        self.files: list[tuple[Path, int]] = [
            (f, label) for label, name in enumerate(self.classes)
            for f in sorted((self.root / name / self.split).glob("*.off"))]
        if not self.files:
            raise FileFormatError(f"ModelNet root {str(self.root)!r} has no {split} .off files")

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> Data:
        path, label = self.files[index]
        mesh = read_modelnet_off(path)
        tri = trimesh.Trimesh(mesh.pos.double().numpy(), mesh.face.T.numpy(), process=False)
        if not tri.area > 0:
            raise FileFormatError(f"OFF file {str(path)!r} has zero surface area")
        key = zlib.crc32(path.relative_to(self.root).as_posix().encode())
        sample_seq, rot_seq = np.random.SeedSequence([self.seed, key]).spawn(2)
        points, face = trimesh.sample.sample_surface(tri, self.num_points,
                                                     seed=np.random.default_rng(sample_seq))
        points, normals = normalise_unit_sphere(points), tri.face_normals[face]
        rot = random_rotation(self.rotate, np.random.default_rng(rot_seq))
        if rot is not None:
            points, normals = points @ rot.T, normals @ rot.T
        x = torch.from_numpy(normals.astype(np.float32)) if self.normals else None
        return Data(pos=torch.from_numpy(points.astype(np.float32)), x=x,
                    y=torch.tensor([label], dtype=torch.long))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"num_points={self.num_points}, classes={len(self.classes)}, size={len(self)})")


class ModelNet10(ModelNet40):
    """ModelNet10: the same layout and loader as :class:`ModelNet40` (10 class folders)."""

