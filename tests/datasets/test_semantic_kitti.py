"""Tests for geo3d.datasets.semantic_kitti on tiny layouts in the real binary formats."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from geo3d.datasets import (
    SEMANTIC_KITTI_CLASSES,
    SEMANTIC_KITTI_LEARNING_MAP,
    SEMANTIC_KITTI_RAW_CLASSES,
    SemanticKitti,
    semantic_kitti_learning_labels,
)
from geo3d.errors import FileFormatError, InvalidInputError

REAL = Path(__file__).resolve().parents[2].parent / "shared/data/real"

# learning_map_inv of semantic-kitti.yaml: learning id -> a raw id of that class
LEARNING_MAP_INV = {0: 0, 1: 10, 2: 11, 3: 15, 4: 18, 5: 20, 6: 30, 7: 31, 8: 32, 9: 40, 10: 44,
                    11: 48, 12: 49, 13: 50, 14: 51, 15: 70, 16: 71, 17: 72, 18: 80, 19: 81}  # fmt: skip


def _write_frame(folder: Path, frame: int, semantic, instance, with_labels: bool = True, seed: int = 0) -> np.ndarray:
    n = len(semantic)
    rng = np.random.default_rng(seed)
    scan = rng.uniform(-20, 20, (n, 4)).astype("<f4")
    scan[:, 3] = rng.uniform(0, 1, n)
    (folder / "velodyne").mkdir(parents=True, exist_ok=True)
    scan.tofile(folder / "velodyne" / f"{frame:06d}.bin")
    if with_labels:
        (folder / "labels").mkdir(exist_ok=True)
        raw = np.asarray(semantic, dtype=np.uint32) | (np.asarray(instance, dtype=np.uint32) << 16)
        raw.astype("<u4").tofile(folder / "labels" / f"{frame:06d}.label")
    return scan


@pytest.fixture
def root(tmp_path):
    seq = tmp_path / "sequences"
    _write_frame(seq / "00", 0, [10, 252, 40, 0, 99, 81], [3, 3, 0, 0, 0, 0])
    _write_frame(seq / "00", 1, [30, 254, 72], [1, 2, 0], seed=1)
    _write_frame(seq / "00", 10, [48, 48], [0, 0], seed=2)
    _write_frame(seq / "08", 5, [50, 51, 259], [0, 0, 9], seed=3)
    _write_frame(seq / "11", 0, [0] * 7, [0] * 7, with_labels=False, seed=4)
    return tmp_path


def test_items_carry_scan_remission_labels_and_ids(root):
    data = SemanticKitti(root, [0])[0]
    scan = np.fromfile(root / "sequences/00/velodyne/000000.bin", dtype="<f4").reshape(-1, 4)
    assert torch.equal(data.pos, torch.from_numpy(scan[:, :3]))
    assert torch.equal(data.x, torch.from_numpy(scan[:, 3:])) and data.x_names == ["intensity"]
    names = [SEMANTIC_KITTI_CLASSES[i] if i >= 0 else None for i in data.y.tolist()]
    assert names == ["car", "car", "road", None, None, "traffic-sign"]  # moving-car -> car
    assert data.y.dtype == data.instance.dtype == torch.long
    assert data.instance.tolist() == [3, 3, -1, -1, -1, -1]
    assert data.sequence == "00" and data.frame == 0


def test_frame_order_sequences_and_raw_map(root):
    dataset = SemanticKitti(root, ["08", 0], label_map="raw")
    assert dataset.sequences == ["08", "00"]
    assert [(d.sequence, d.frame) for d in dataset] == [("08", 5), ("00", 0), ("00", 1), ("00", 10)]
    assert dataset[0].y.tolist() == [50, 51, 259] and dataset[0].instance.tolist() == [-1, -1, 9]
    assert SemanticKitti(root, "8")[0].y.tolist() == [12, 13, 4]  # building, fence, other-vehicle
    assert len(SemanticKitti(root, [0, 8, 11])) == 5
    assert "frames=4" in repr(dataset)


def test_sequence_without_labels_has_no_y(root):
    data = SemanticKitti(root, [11])[0]
    assert data.pos.shape == (7, 3) and "y" not in data and "instance" not in data


def test_learning_map_constants_agree_with_the_yaml_definition():
    assert len(SEMANTIC_KITTI_CLASSES) == 19
    assert set(SEMANTIC_KITTI_LEARNING_MAP) == set(SEMANTIC_KITTI_RAW_CLASSES)
    assert set(SEMANTIC_KITTI_LEARNING_MAP.values()) == set(range(20))
    for learning, raw in LEARNING_MAP_INV.items():
        assert SEMANTIC_KITTI_LEARNING_MAP[raw] == learning
        if learning:  # the class name of the representative raw id
            assert SEMANTIC_KITTI_CLASSES[learning - 1] == SEMANTIC_KITTI_RAW_CLASSES[raw]
    for raw, name in SEMANTIC_KITTI_RAW_CLASSES.items():  # moving-X maps to X
        if name.startswith("moving-") and name not in ("moving-bus", "moving-on-rails"):
            assert SEMANTIC_KITTI_CLASSES[SEMANTIC_KITTI_LEARNING_MAP[raw] - 1] == name[len("moving-") :]


def test_learning_labels_function():
    raw = torch.tensor([50, 70, 71, 80, 52, 0, 1, 60, 13, 258])
    expected = [12, 14, 15, 17, -1, -1, -1, 8, 4, 3]  # lane-marking -> road, bus -> other-vehicle
    assert semantic_kitti_learning_labels(raw).tolist() == expected
    assert semantic_kitti_learning_labels(raw.to(torch.int32)).dtype == torch.long
    for bad in (torch.tensor([5]), torch.tensor([-1]), torch.tensor([100000])):
        with pytest.raises(InvalidInputError, match="does not define"):
            semantic_kitti_learning_labels(bad)
    with pytest.raises(InvalidInputError, match="integer"):
        semantic_kitti_learning_labels(torch.tensor([50.0]))


@pytest.mark.skipif(not (REAL / "semantickitti").is_dir(), reason="real SemanticKITTI sample not found")
def test_real_semantickitti_sample(tmp_path):
    seq = tmp_path / "sequences" / "00"
    (seq / "velodyne").mkdir(parents=True)
    (seq / "labels").mkdir()
    shutil.copy(REAL / "semantickitti/000000.bin", seq / "velodyne/000000.bin")
    shutil.copy(REAL / "semantickitti/000000.label", seq / "labels/000000.label")
    data = SemanticKitti(tmp_path, [0])[0]
    assert data.pos.shape == (50, 3) and data.y.shape == (50,) and data.instance.shape == (50,)
    raw = np.fromfile(REAL / "semantickitti/000000.label", dtype="<u4") & 0xFFFF
    names = {50: "building", 70: "vegetation", 71: "trunk", 80: "pole", 52: None, 0: None}
    assert set(raw.tolist()) <= set(names)
    for r, y in zip(raw.tolist(), data.y.tolist()):
        assert (SEMANTIC_KITTI_CLASSES[y] if y >= 0 else None) == names[r]
    assert torch.equal(SemanticKitti(tmp_path, ["00"], label_map="raw")[0].y, torch.from_numpy(raw.astype(np.int64)))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("sequences", [[], [-1], ["ab"], [True], [0, "00"], None, [1.0], "0a"])
def test_bad_sequences(root, sequences):
    with pytest.raises(InvalidInputError, match="sequence"):
        SemanticKitti(root, sequences)


def test_bad_label_map(root):
    with pytest.raises(InvalidInputError, match="label_map"):
        SemanticKitti(root, [0], label_map="coarse")


def test_missing_or_empty_sequence(root):
    with pytest.raises(FileFormatError, match="sequences/05/velodyne"):
        SemanticKitti(root, [5])
    (root / "sequences/09/velodyne").mkdir(parents=True)
    with pytest.raises(FileFormatError, match="no NNNNNN.bin"):
        SemanticKitti(root, [9])


def test_label_count_mismatch_missing_label_and_unknown_ids(root):
    labels = root / "sequences/00/labels"
    np.zeros(5, dtype="<u4").tofile(labels / "000000.label")
    dataset = SemanticKitti(root, [0])
    with pytest.raises(FileFormatError, match="5 labels.*6 points"):
        dataset[0]
    (labels / "000001.label").unlink()
    with pytest.raises(FileFormatError, match="000001.label"):
        dataset[1]
    np.array([48, 7], dtype="<u4").tofile(labels / "000010.label")
    with pytest.raises(FileFormatError, match=r"000010.label.*\[7\]"):
        dataset[2]
    assert SemanticKitti(root, [0], label_map="raw")[2].y.tolist() == [48, 7]  # raw keeps them
    (labels / "000010.label").write_bytes(bytes(7))
    with pytest.raises(FileFormatError, match="record size 4"):
        dataset[2]
