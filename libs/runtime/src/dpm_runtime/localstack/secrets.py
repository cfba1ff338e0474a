"""Private files of the embedded stack: directories 0700, files 0600, created with their mode.

Every file here is opened with ``os.open(..., mode)`` (and ``O_EXCL`` for new secrets), so there is
no moment in which another local account could read it; a file or directory left by an older
version with a wider mode is narrowed on the next start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """``path`` as a directory only its owner enters (created, or narrowed if it exists)."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    path.chmod(mode)
    return path


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to a 0600 file; ``exclusive`` refuses to replace an existing one."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode on open: narrow it
        os.write(fd, data)
    finally:
        os.close(fd)


def open_private_log(path: Path) -> int:
    """An append-only 0600 log file descriptor (the caller closes it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def secret(directory: Path, name: str) -> str:
    """The secret ``name`` kept in ``directory``, generated (URL-safe, 256 bits) on first use."""
    path = private_dir(directory) / name
    with contextlib.suppress(FileExistsError):
        write_private(path, (secrets.token_urlsafe(32) + "\n").encode(), exclusive=True)
    path.chmod(FILE_MODE)
    return path.read_text().strip()
