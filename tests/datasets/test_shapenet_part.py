"""ShapeNetPart on tiny files in the layout of the normal-resampled txt release."""

import json

import numpy as np
import pytest
import torch

from geo3d.datasets import ShapeNetPart
from geo3d.errors import FileFormatError, InvalidInputError

SHAPES = {  # split -> [(synset, id, part range, rows)]
    "train": [("02691156", "a1", (0, 3), 40), ("03797390", "m1", (36, 37), 30)],
    "val": [("03797390", "m2", (36, 37), 25)],
    "test": [("02691156", "a2", (0, 3), 35)],
}


def _rows(rng, low, high, n):
    pos = rng.normal(size=(n, 3)) * 0.3 + 0.1
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    parts = rng.integers(low, high + 1, n)
    return np.concatenate([pos, normals, parts[:, None]], axis=1)


@pytest.fixture()
def root(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "synsetoffset2category.txt").write_text("Airplane\t02691156\nMug\t03797390\n")
    (tmp_path / "train_test_split").mkdir()
    for split, shapes in SHAPES.items():
        entries = []
        for synset, shape, (low, high), n in shapes:
            (tmp_path / synset).mkdir(exist_ok=True)
            np.savetxt(tmp_path / synset / f"{shape}.txt", _rows(rng, low, high, n), fmt="%.6f")
            entries.append(f"shape_data/{synset}/{shape}")
        (tmp_path / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    return tmp_path


def test_items_have_points_normals_parts_and_category(root):
    ds = ShapeNetPart(root, "train", num_points=32)
    assert len(ds) == 2 and ds.num_classes == 50
    assert ShapeNetPart.CLASS_PARTS["Airplane"] == (0, 1, 2, 3)
    assert ShapeNetPart.CLASS_PARTS["Table"] == (47, 48, 49) and len(ShapeNetPart.CLASS_NAMES) == 16
    for data, name in zip(ds, ("Airplane", "Mug")):
        assert data.pos.shape == data.x.shape == (32, 3) and data.pos.dtype == torch.float32
        assert data.y.shape == (32,) and data.y.dtype == torch.long
        assert data.category.tolist() == [ShapeNetPart.CLASS_NAMES.index(name)]
        parts = ShapeNetPart.CLASS_PARTS[name]
        assert data.y.min() >= parts[0] and data.y.max() <= parts[-1]
        assert abs(data.pos.norm(dim=1).max().item() - 1) < 1e-5


def test_all_points_in_file_order_match_the_file(root):
    ds = ShapeNetPart(root, "val", num_points=None, normalize=False)
    table = np.loadtxt(root / "03797390" / "m2.txt")
    data = ds[0]
    np.testing.assert_allclose(data.pos.numpy(), table[:, :3], rtol=0, atol=1e-6)
    np.testing.assert_allclose(data.x.numpy(), table[:, 3:6], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.y.numpy(), table[:, 6].astype(int))


def test_selection_is_deterministic_and_pads_small_shapes(root):
    a, b = ShapeNetPart(root, "test", num_points=20)[0], ShapeNetPart(root, "test", num_points=20)[0]
    assert torch.equal(a.pos, b.pos) and torch.equal(a.y, b.y)
    assert not torch.equal(a.pos, ShapeNetPart(root, "test", num_points=20, seed=1)[0].pos)
    assert ShapeNetPart(root, "test", num_points=100)[0].pos.shape == (100, 3)  # 35 rows


def test_trainval_and_category_filter(root):
    assert len(ShapeNetPart(root, "trainval")) == 3
    mugs = ShapeNetPart(root, "trainval", categories=["Mug"])
    assert len(mugs) == 2 and all(d.category.item() == 11 for d in mugs)


def test_bad_rows_name_file_and_line(root):
    path = root / "02691156" / "a1.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 2)[0]  # a row cut short
    path.write_text("\n".join(lines))
    with pytest.raises(FileFormatError, match=r"a1\.txt' line 5"):
        ShapeNetPart(root)[0]
    lines[4] = "0 0 0 1 0 0 7"  # a Mug part on an airplane
    path.write_text("\n".join(lines))
    with pytest.raises(FileFormatError, match=r"a1\.txt.*row 5.*part label"):
        ShapeNetPart(root)[0]
    path.unlink()
    with pytest.raises(FileFormatError, match="a1.txt"):
        ShapeNetPart(root)[0]


def test_bad_index_and_split_files(root):
    split = root / "train_test_split" / "shuffled_test_file_list.json"
    split.write_text("[\"shape_data/0269")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        ShapeNetPart(root, "test")
    split.write_text(json.dumps(["shape_data/04379243/t1"]))
    with pytest.raises(FileFormatError, match="04379243"):
        ShapeNetPart(root, "test")
    split.unlink()
    with pytest.raises(FileFormatError, match="shuffled_test_file_list.json"):
        ShapeNetPart(root, "test")
    (root / "synsetoffset2category.txt").write_text("Spaceship\t0001\n")
    with pytest.raises(FileFormatError, match="line 1"):
        ShapeNetPart(root)


@pytest.mark.parametrize("kwargs", [dict(split="all"), dict(num_points=0),
                                    dict(categories="Mug"), dict(categories=["mug"]),
                                    dict(normalize=None)])
def test_bad_arguments(root, kwargs):
    with pytest.raises(InvalidInputError, match=next(iter(kwargs))):
        ShapeNetPart(root, **kwargs)
