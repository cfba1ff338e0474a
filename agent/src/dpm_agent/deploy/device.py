"""A disk to read or write: a block device (sizes from the kernel) or a disk-image file (sizes given
or probed). Everything else in the deploy client sees only this."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from dataclasses import dataclass

from dpm_schemas import E

_BLKSSZGET = 0x1268  # logical sector size
_BLKPBSZGET = 0x127B  # physical sector size
_BLKGETSIZE64 = 0x80081272


@dataclass(frozen=True)
class Device:
    path: str
    size: int
    sector_size: int
    physical_sector_size: int
    block: bool

    def read(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb", buffering=0) as f:
            return os.pread(f.fileno(), length, offset)


def _ioctl_int(fd: int, request: int, fmt: str) -> int:
    buf = fcntl.ioctl(fd, request, b"\0" * struct.calcsize(fmt))
    return int(struct.unpack(fmt, buf)[0])


def open_device(path: str, sector_size: int | None = None) -> Device:
    """Describe ``path``. For a file the logical sector size is ``sector_size``, else probed from a
    GPT header (at byte 512 or 4096), else 512 -- a file has no sector size of its own."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise E.DISK_NOT_FOUND(disk=path, reason=exc.strerror or str(exc)) from None
    if stat.S_ISBLK(st.st_mode):
        fd = os.open(path, os.O_RDONLY)
        try:
            size = _ioctl_int(fd, _BLKGETSIZE64, "Q")
            logical = _ioctl_int(fd, _BLKSSZGET, "i")
            physical = _ioctl_int(fd, _BLKPBSZGET, "I")
        finally:
            os.close(fd)
        return Device(path, size, logical, physical, True)
    if not stat.S_ISREG(st.st_mode):
        raise E.DISK_NOT_FOUND(disk=path, reason="neither a block device nor a disk-image file")
    if sector_size is None:
        sector_size = _probe_sector_size(path)
    return Device(path, st.st_size, sector_size, sector_size, False)


def _probe_sector_size(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(4096 + 8)
    for size in (512, 4096):
        if head[size : size + 8] == b"EFI PART":
            return size
    return 512
