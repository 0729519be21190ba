"""FAUST registrations (Bogo et al., CVPR 2014) for dense correspondence and segmentation.

Layout (the official ``MPI-FAUST`` archive, unpacked)::

    root/training/registrations/tr_reg_000.ply ... tr_reg_099.ply

Each registration is the SMPL-like template (6,890 vertices, 13,776 triangles) fitted to a
scan, so vertex ``i`` is the same body point in every file: the correspondence label of
vertex ``i`` is ``i``. The usual split (Masci et al. 2015; de Haan et al. 2021) trains on
registrations 0-79 and tests on 80-99. geo3d's :func:`geo3d.io.read_mesh` (trimesh,
``process=False``) reads the PLY files.

Checks: every file must exist and hold ``num_vertices`` vertices (default 6,890; smaller
meshes in the same layout work for tests by passing their count) and the connectivity of
the first file read; a file that differs raises ``FileFormatError`` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch_geometric.data import Data

from geo3d.datasets._common import CachedItems, check_bool, check_choice, check_int
from geo3d.errors import FileFormatError
from geo3d.datasets.features import MESH_FEATURES, mesh_features
from geo3d.io.mesh import read_mesh

__all__ = ["FAUST"]

PathLike = Union[str, "os.PathLike[str]"]
_SPLITS = {"train": range(0, 80), "test": range(80, 100), "all": range(0, 100)}


class FAUST(CachedItems):
    """The 100 FAUST training registrations as meshes with correspondence labels.

    Args:
        root: the ``MPI-FAUST`` folder (holding ``training/registrations``).
        split: ``"train"`` (0-79, default), ``"test"`` (80-99) or ``"all"``.
        features: ``"curvature"`` (default: ``x`` = the two invariant scalars of
            :func:`geo3d.geometry.mesh.curvature_features`), ``"hks"`` (16 columns of
            :func:`geo3d.geometry.spectral.heat_kernel_signature`) or ``"none"``.
        num_vertices: vertices expected per file (default 6,890).
        cache: keep loaded meshes in memory (default False).

    Shapes:
        ``dataset[i]``: ``Data`` with ``pos`` [V, 3] float32 (metres), ``face`` [3, T] long,
        ``x`` [V, 2] or [V, 16] float32 or None, ``y`` = ``corr`` = ``arange(V)``, ``subject`` (the
        file index // 10) and ``pose`` (file index % 10).

    Raises:
        FileFormatError: missing folder or file, a wrong vertex count, a connectivity
            different from the first file's, or a corrupt PLY.
    """

    def __init__(self, root: PathLike, split: str = "train", features: str = "curvature",
                 num_vertices: int = 6890, cache: bool = False) -> None:
        self.root = Path(root)
        self.split = check_choice("split", split, tuple(_SPLITS))
        self.features = check_choice("features", features, tuple(MESH_FEATURES))
        self.num_vertices = check_int("num_vertices", num_vertices, 3)
        folder = self.root / "training" / "registrations"
        if not folder.is_dir():
            raise FileFormatError(f"FAUST folder {str(folder)!r} does not exist "
                                  f"(expected root/training/registrations/tr_reg_XXX.ply)")
        self.files = [folder / f"tr_reg_{i:03d}.ply" for i in _SPLITS[self.split]]
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            raise FileFormatError(f"FAUST is missing {len(missing)} registration(s), e.g. {missing[0]!r}")
        self._face: Optional[torch.Tensor] = None
        super().__init__(check_bool("cache", cache))

    @property
    def num_classes(self) -> int:
        """Template vertices (the correspondence classes)."""
        return self.num_vertices

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> Data:
        path = self.files[index]
        mesh = read_mesh(path, "ply")
        if mesh.pos.shape[0] != self.num_vertices:
            raise FileFormatError(f"FAUST registration {str(path)!r} has {mesh.pos.shape[0]} "
                                  f"vertices, expected {self.num_vertices}")
        if self._face is None:
            self._face = mesh.face
        elif not torch.equal(mesh.face, self._face):
            raise FileFormatError(f"FAUST registration {str(path)!r} has a connectivity different "
                                  f"from the other registrations'")
        number = int(path.stem.rsplit("_", 1)[1])
        corr = torch.arange(self.num_vertices)
        x = mesh_features(mesh.pos, mesh.face, self.features)
        return Data(pos=mesh.pos, face=mesh.face, x=x, y=corr, corr=corr,
                    subject=number // 10, pose=number % 10)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, size={len(self)})"
