"""Atomic file writes: write to a temporary file in the target's folder, then rename.

Written here with the standard library (``tempfile`` + ``os.replace``): a reader never
sees a half-written file, and a failed write leaves any older file in place. The rename
is atomic because the temporary file lies in the same folder (same file system).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

from geo3d.errors import FileFormatError

__all__ = ["atomic_write", "atomic_write_bytes"]

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_write(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """Give a temporary path to write to; on success it replaces ``path`` atomically.

    The temporary file lies in the folder of ``path`` and is named
    ``.<name>.<random>.tmp<suffix>``: pass the extension in ``suffix`` when the writer
    picks the format from it (Open3D does). On an exception the temporary file is
    removed and ``path`` is left untouched.

    Args:
        path: The file to create or replace. Its folder must exist.
        suffix: Ending of the temporary file name, e.g. ``".ply"``. Default ``""``.

    Yields:
        The temporary path (an empty file that the caller overwrites).

    Raises:
        FileFormatError: If the folder of ``path`` does not exist or ``path`` is a folder.
    """
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise FileFormatError(f"cannot write {str(target)!r}: folder {str(folder)!r} does not exist")
    if target.is_dir():
        raise FileFormatError(f"cannot write {str(target)!r}: it is a folder")
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileFormatError(f"writing {str(target)!r} failed: no temporary file was written")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Args:
        path: The file to create or replace. Its folder must exist.
        data: The bytes to write.
    """
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
