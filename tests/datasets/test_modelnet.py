"""ModelNet40 / ModelNet10 on tiny OFF files written in the release layout."""

import numpy as np
import pytest
import torch
import trimesh

from geo3d.datasets import ModelNet10, ModelNet40, read_modelnet_off
from geo3d.errors import FileFormatError, InvalidInputError


def _off(mesh: trimesh.Trimesh, merged: bool = False) -> str:
    counts = f"{len(mesh.vertices)} {len(mesh.faces)} 0"
    head = f"OFF{counts}\n" if merged else f"OFF\n{counts}\n"
    rows = [" ".join(f"{c:.6f}" for c in v) for v in mesh.vertices]
    rows += ["3 " + " ".join(str(i) for i in f) for f in mesh.faces]
    return head + "\n".join(rows) + "\n"


@pytest.fixture()
def root(tmp_path):
    """Two classes; the sofa train file has the merged 'OFF<counts>' header."""
    shapes = {
        "sofa": [trimesh.creation.box((2.0, 1.0, 0.8)), trimesh.creation.box((1.5, 0.7, 0.9))],
        "airplane": [trimesh.creation.icosphere(1, 0.5), trimesh.creation.cylinder(0.2, 2.0)],
    }
    for name, (train, test) in shapes.items():
        for split, mesh, merged in (("train", train, name == "sofa"), ("test", test, False)):
            folder = tmp_path / name / split
            folder.mkdir(parents=True)
            (folder / f"{name}_0001.off").write_text(_off(mesh, merged))
    (tmp_path / "README.txt").write_text("not a class")
    return tmp_path


def test_classes_labels_and_shapes(root):
    ds = ModelNet40(root, "train", num_points=256)
    assert ds.classes == ("airplane", "sofa") and ds.num_classes == 2 and len(ds) == 2
    for i, data in enumerate(ds):
        assert data.pos.shape == (256, 3) and data.pos.dtype == torch.float32
        assert data.y.tolist() == [i] and data.y.dtype == torch.long and data.x is None
        assert data.pos.mean(0).abs().max() < 1e-5
        assert abs(data.pos.norm(dim=1).max().item() - 1.0) < 1e-5
    assert len(ModelNet10(root, "test", num_points=8)) == 2


def test_merged_header_is_read_like_a_plain_one(root, tmp_path):
    merged = root / "sofa" / "train" / "sofa_0001.off"
    assert merged.read_text().startswith("OFF8 12 0")
    plain = tmp_path / "plain.off"
    plain.write_text(merged.read_text().replace("OFF8", "OFF\n8", 1))
    a, b = read_modelnet_off(merged), read_modelnet_off(plain)
    assert torch.equal(a.pos, b.pos) and torch.equal(a.face, b.face) and a.face.shape == (3, 12)


def test_samples_lie_on_the_surface_with_the_face_normals(root):
    """On a box, the points with normal +-e_k share the coordinate k (one face plane)."""
    data = ModelNet40(root, "train", num_points=2000, normals=True)[1]  # the sofa box
    n = data.x.double()
    torch.testing.assert_close(n.norm(dim=1), torch.ones(2000, dtype=torch.float64))
    for k in range(3):
        for sign in (-1, 1):
            on = n[:, k] * sign > 0.99
            assert on.sum() > 50
            coord = data.pos[on, k] * sign
            assert coord.max() - coord.min() < 1e-5
            assert coord.min() > 0  # outward: the +x face is on the +x side


def test_sampling_is_deterministic_per_file_and_seed(root):
    a = ModelNet40(root, num_points=64)[0]
    b = ModelNet40(root, num_points=64)[0]
    c = ModelNet40(root, num_points=64, seed=1)[0]
    assert torch.equal(a.pos, b.pos) and not torch.equal(a.pos, c.pos)


def test_rotation_and_cache(root):
    a = ModelNet40(root, num_points=64)[0]
    b = ModelNet40(root, num_points=64, rotate="so3", cache=True)
    first = b[0]
    torch.testing.assert_close(a.pos.norm(dim=1), first.pos.norm(dim=1), atol=1e-5, rtol=0)
    assert not torch.allclose(a.pos, first.pos, atol=1e-2)
    first.pos.zero_()
    assert b[0].pos.abs().sum() > 0


def test_truncated_and_corrupt_files_name_the_path(root):
    bad = root / "airplane" / "train" / "airplane_0001.off"
    bad.write_text("\n".join(bad.read_text().splitlines()[:20]))
    with pytest.raises(FileFormatError, match="airplane_0001.off"):
        ModelNet40(root)[0]
    merged = root / "sofa" / "train" / "sofa_0001.off"
    merged.write_text("\n".join(merged.read_text().splitlines()[:5]))
    with pytest.raises(FileFormatError, match=r"sofa_0001\.off.*truncated"):
        ModelNet40(root)[1]
    flat = root / "sofa" / "test" / "sofa_0001.off"
    flat.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n")
    with pytest.raises(FileFormatError, match="zero surface area"):
        ModelNet40(root, "test")[1]
    with pytest.raises(FileFormatError, match="does not exist"):
        read_modelnet_off(root / "missing.off")


def test_bad_roots_and_arguments(root, tmp_path):
    with pytest.raises(FileFormatError, match="not a folder"):
        ModelNet40(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileFormatError, match="no class folders"):
        ModelNet40(empty)
    with pytest.raises(InvalidInputError, match="split"):
        ModelNet40(root, "val")
    with pytest.raises(InvalidInputError, match="num_points"):
        ModelNet40(root, num_points=0)
    with pytest.raises(InvalidInputError, match="root"):
        ModelNet40(None)
    with pytest.raises(IndexError):
        ModelNet40(root)[5]
    np.testing.assert_equal(len(ModelNet40(root, "test")), 2)
