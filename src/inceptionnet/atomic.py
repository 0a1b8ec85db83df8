"""Atomic file writes: a crash at any moment leaves either the old file or the new one, never a torn one.

Every file the package writes that a later run reads back (training checkpoints, weights files, a
study's run status) goes through `atomic_write`. Any layer may import this module.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _read_umask() -> int:
    current = os.umask(0)  # the only way to read the umask is to set it: done once, at import
    os.umask(current)
    return current


_UMASK = _read_umask()


def _mode_of(path: Path) -> int:
    """The permissions a rewrite of `path` gets: the existing regular file's, else 0666 less the umask
    (mkstemp's 0600 would hide a new file from the other users of the folder)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0o666 & ~_UMASK
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666 & ~_UMASK


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object] | bytes) -> Path:
    """Write `path` atomically: `write(f)` fills a temporary file (or `write` is the bytes themselves).

    The bytes go to a temporary file in the same folder (same file system), are flushed to disk, and
    the file is renamed over the target (atomic on POSIX and Windows); the folder is then synced so
    the rename itself survives a power loss. On any error the temporary file is removed and the
    previous file at `path`, if any, is left as it was. The new file keeps the old one's permissions
    (a 0600 file stays private); a symbolic link at `path` is replaced, never written through.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _mode_of(path))
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, bytes):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
