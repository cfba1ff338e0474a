"""The two Linux calls Python's os module lacks that the image path needs: syncfs (make one
backup durable without flushing every filesystem) and fallocate's hole punching (zeros that cost
no writes and keep image files sparse). Each falls back when libc cannot give it."""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

_FALLOC_PUNCH_HOLE_KEEP_SIZE = 0x01 | 0x02


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
        libc.syncfs.argtypes = [ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (all of them, if syncfs is unavailable)."""
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Make a file's byte range read as zeros without writing them; False if it cannot."""
    libc = _libc()
    return libc is not None and int(libc.fallocate(fd, _FALLOC_PUNCH_HOLE_KEEP_SIZE, offset, length)) == 0
