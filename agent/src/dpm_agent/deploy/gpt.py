"""Moving a restored GPT's backup to the end of a larger disk.

A whole-disk image restored onto a larger disk leaves the backup header and entries where the
source disk ended; firmware and kernels then warn, and the space after it is unusable until
something like ``sgdisk -e`` runs. This does what ``sgdisk -e`` does, with the structures the
layout reader already knows: new backup entries and header at the disk's end, the primary header
pointing at them, the usable range grown, the protective MBR covering the disk, the old backup
header wiped."""

from __future__ import annotations

import os
import struct
import zlib

from dpm_schemas import E


def grow_gpt(path: str, sector_size: int, old_size: int, new_size: int) -> None:
    ss = sector_size
    fd = os.open(path, os.O_RDWR)
    try:
        hdr = bytearray(os.pread(fd, ss, ss))
        if hdr[:8] != b"EFI PART":
            raise E.LAYOUT_UNREADABLE(device=path, reason="no primary GPT header after the restore")
        (hsize,) = struct.unpack_from("<I", hdr, 12)
        entries_lba, count, esize, _ecrc = struct.unpack_from("<QIII", hdr, 72)
        table = os.pread(fd, count * esize, entries_lba * ss)
        last = new_size // ss - 1
        table_sectors = -(-count * esize // ss)
        backup_entries = last - table_sectors
        struct.pack_into("<Q", hdr, 32, last)  # alternate (backup) header LBA
        struct.pack_into("<Q", hdr, 48, backup_entries - 1)  # last usable LBA
        _seal(hdr, hsize)
        backup = bytearray(hdr)
        struct.pack_into("<QQ", backup, 24, last, 1)  # my LBA, alternate LBA
        struct.pack_into("<Q", backup, 72, backup_entries)
        _seal(backup, hsize)
        os.pwrite(fd, table, backup_entries * ss)
        os.pwrite(fd, bytes(backup), last * ss)
        os.pwrite(fd, bytes(hdr), ss)
        old_last = old_size // ss - 1
        if old_last != last:
            stale = os.pread(fd, 8, old_last * ss)
            if stale == b"EFI PART":
                os.pwrite(fd, bytes(ss), old_last * ss)
        mbr = bytearray(os.pread(fd, 512, 0))
        if mbr[446 + 4] == 0xEE:  # protective MBR: it spans the disk (or as much as 32 bits can say)
            struct.pack_into("<I", mbr, 446 + 12, min(new_size // ss - 1, 0xFFFFFFFF))
            os.pwrite(fd, bytes(mbr), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal(hdr: bytearray, hsize: int) -> None:
    struct.pack_into("<I", hdr, 16, 0)
    struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr[:hsize])))
