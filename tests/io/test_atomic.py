"""Tests for geo3d.io.atomic."""

from __future__ import annotations

import os

import pytest

from geo3d.errors import FileFormatError
from geo3d.io import atomic_write, atomic_write_bytes


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.ply"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, suffix=".ply") as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".ply") and tmp != target
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.ply"]


def test_writer_that_removes_its_file_is_an_error(tmp_path):
    with pytest.raises(FileFormatError, match="no temporary file"):
        with atomic_write(tmp_path / "a") as tmp:
            tmp.unlink()
    assert os.listdir(tmp_path) == []


def test_new_file_gets_normal_permissions(tmp_path):
    atomic_write_bytes(tmp_path / "p", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o666 & ~mask


def test_bad_targets(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        atomic_write_bytes(tmp_path / "missing" / "a", b"x")
    with pytest.raises(FileFormatError, match="is a folder"):
        atomic_write_bytes(tmp_path, b"x")
