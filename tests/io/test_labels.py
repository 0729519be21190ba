"""Tests for geo3d.io.labels: SemanticKITTI .label files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import read_labels, write_labels


def test_labels_decode_lower_and_upper_16_bits(tmp_path):
    semantic = np.array([0, 10, 40, 252, 65535], dtype=np.uint32)
    instance = np.array([0, 5, 0, 65535, 1], dtype=np.uint32)
    (semantic | (instance << 16)).astype("<u4").tofile(tmp_path / "a.label")
    sem, inst = read_labels(tmp_path / "a.label")
    assert sem.dtype == inst.dtype == torch.long
    assert sem.tolist() == [0, 10, 40, 252, 65535]
    assert inst.tolist() == [-1, 5, -1, 65535, 1]


def test_labels_round_trip(tmp_path):
    sem = torch.tensor([0, 10, 40, 252, 9])
    inst = torch.tensor([-1, 3, -1, 65535, 1])
    write_labels(tmp_path / "b.label", sem, inst)
    assert (tmp_path / "b.label").stat().st_size == 4 * 5
    back_sem, back_inst = read_labels(tmp_path / "b.label")
    assert torch.equal(back_sem, sem) and torch.equal(back_inst, inst)
    write_labels(tmp_path / "c.label", sem.to(torch.int32))  # no instances
    assert read_labels(tmp_path / "c.label")[1].tolist() == [-1] * 5


def test_bad_label_files(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        read_labels(tmp_path / "missing.label")
    (tmp_path / "empty.label").write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        read_labels(tmp_path / "empty.label")
    (tmp_path / "cut.label").write_bytes(bytes(10))
    with pytest.raises(FileFormatError, match="10 bytes.*record size 4") as err:
        read_labels(tmp_path / "cut.label")
    assert "cut.label" in str(err.value)


@pytest.mark.parametrize(
    "semantic, instance, match",
    [
        (torch.tensor([1.0, 2.0]), None, "integer"),
        (torch.zeros(2, 2, dtype=torch.long), None, "1-D"),
        (torch.tensor([], dtype=torch.long), None, "empty"),
        (torch.tensor([-1, 2]), None, "65535"),
        (torch.tensor([70000, 2]), None, "65535"),
        (torch.tensor([1, 2]), torch.tensor([0, 1]), "instance id 0"),
        (torch.tensor([1, 2]), torch.tensor([-2, 1]), "instance ids"),
        (torch.tensor([1, 2]), torch.tensor([1, 2, 3]), "2 entries"),
        ([1, 2], None, "torch.Tensor"),
    ],
)
def test_write_labels_rejects_bad_input(tmp_path, semantic, instance, match):
    with pytest.raises(InvalidInputError, match=match):
        write_labels(tmp_path / "x.label", semantic, instance)
    assert not (tmp_path / "x.label").exists()
