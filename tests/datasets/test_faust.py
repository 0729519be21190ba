"""FAUST loader on tiny registrations written in the real layout.

The real registrations have 6,890 vertices; the loader's checks take the count as a
parameter, so these files are a small closed mesh (an icosphere, 162 vertices) deformed
per file and written as binary PLY like the originals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from torch_geometric.data import Data

from geo3d.datasets import FAUST
from geo3d.errors import FileFormatError
from geo3d.io import write_mesh

V = 162


def _write(root, numbers, vertices_per_file=V):
    folder = root / "training" / "registrations"
    folder.mkdir(parents=True, exist_ok=True)
    base = trimesh.creation.icosphere(subdivisions=2)
    for i in numbers:
        rng = np.random.default_rng(i)
        v = base.vertices * (1 + 0.1 * rng.random((len(base.vertices), 1)))
        f = base.faces
        if vertices_per_file != V:
            sub = trimesh.creation.icosphere(subdivisions=1)
            v, f = sub.vertices, sub.faces
        write_mesh(Data(pos=torch.tensor(v, dtype=torch.float32), face=torch.tensor(f.T.copy())),
                   folder / f"tr_reg_{i:03d}.ply")
    return root


def test_faust_layout_split_and_labels(tmp_path):
    root = _write(tmp_path / "MPI-FAUST", range(100))
    train, test = FAUST(root, num_vertices=V), FAUST(root, "test", num_vertices=V, cache=True)
    assert len(train) == 80 and len(test) == 20 and train.num_classes == V
    d = test[0]
    assert d.pos.shape == (V, 3) and d.face.shape[0] == 3 and d.x.shape == (V, 2)
    assert torch.equal(d.y, torch.arange(V)) and d.subject == 8 and d.pose == 0
    assert torch.equal(test[-1].face, d.face) and test[-1].pose == 9
    assert FAUST(root, "all", features="none", num_vertices=V)[5].x is None
    assert FAUST(root, "all", features="hks", num_vertices=V)[5].x.shape == (V, 16)


def test_faust_errors_name_the_file(tmp_path):
    with pytest.raises(FileFormatError, match="registrations"):
        FAUST(tmp_path / "nowhere")
    root = _write(tmp_path / "a", range(99))
    with pytest.raises(FileFormatError, match="tr_reg_099.ply"):
        FAUST(root, "test", num_vertices=V)
    root = _write(tmp_path / "b", range(100))
    with pytest.raises(FileFormatError, match="6890"):
        FAUST(root, "test")[0]  # default: the real vertex count
    _write(root, [81], vertices_per_file=42)
    ds = FAUST(root, "test", num_vertices=V)
    ds[0]
    with pytest.raises(FileFormatError, match="tr_reg_081.ply"):
        ds[1]
    (root / "training" / "registrations" / "tr_reg_082.ply").write_bytes(b"ply\nformat binary")
    with pytest.raises(FileFormatError, match="tr_reg_082.ply"):
        ds[2]
