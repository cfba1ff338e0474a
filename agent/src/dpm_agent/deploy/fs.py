"""Filesystems: what a partition holds (by its superblock's magic) -- the disk viewer's column,
and which used-block map a used-sector backup can ask for."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable


def detect(head: bytes) -> str:
    """Name the filesystem whose superblock starts ``head`` (the partition's first 128 KiB)."""
    if len(head) >= 1082 and head[1080:1082] == b"\x53\xef":
        compat, incompat = struct.unpack_from("<II", head, 1024 + 0x5C)
        if incompat & 0x2C0:  # extents, 64bit or flex_bg
            return "ext4"
        return "ext3" if compat & 0x4 else "ext2"
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        if head[3:11] == b"NTFS    ":
            return "ntfs"
        if head[3:11] == b"EXFAT   ":
            return "exfat"
        if head[82:87] == b"FAT32" or head[54:59] in (b"FAT12", b"FAT16", b"FAT  "):
            return "vfat"
    if head[:4] == b"XFSB":
        return "xfs"
    for page in (4096, 8192, 16384, 65536):
        if len(head) >= page and head[page - 10 : page] in (b"SWAPSPACE2", b"SWAP-SPACE"):
            return "swap"
    if len(head) >= 65536 + 72 and head[65536 + 64 : 65536 + 72] == b"_BHRfS_M":
        return "btrfs"
    return "unknown"


# Gaps between used runs smaller than this are captured anyway: a few free blocks cost less than
# the extra extents (and tiny chunks) of a fragmented map.
MERGE_GAP = 256 * 1024


def used_extents(fs: str, read: Callable[[int, int], bytes], size: int, spec: str) -> list[tuple[int, int]] | None:
    """The byte ranges ``(offset, length)`` of a ``size``-byte partition its filesystem uses, or
    None when dpm cannot tell (the partition is then captured whole). ``read(offset, n)`` reads
    the partition; ``spec`` names it for e2fsprogs (``disk.img?offset=N``)."""
    if fs in ("ext2", "ext3", "ext4"):
        runs = _ext_used(spec)
    elif fs == "vfat":
        runs = _fat_used(read, size)
    elif fs == "swap":
        runs = [(0, 4096)]  # the header; the rest is scratch, meaningless after a reboot
    else:
        return None
    return merge(runs, size)


def merge(runs: list[tuple[int, int]], size: int, gap: int = MERGE_GAP) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(runs):
        end = min(off + n, size)
        if end <= off:
            continue
        if out and off - (out[-1][0] + out[-1][1]) <= gap:
            last_off, last_n = out[-1]
            out[-1] = (last_off, max(last_off + last_n, end) - last_off)
        else:
            out.append((off, end - off))
    return out


def _ext_used(spec: str) -> list[tuple[int, int]]:
    """Used blocks from e2fsprogs' own reading of the block bitmaps (``dumpe2fs``), which knows
    every feature (flex_bg, uninitialised groups, 64bit) better than a parser of ours would."""
    proc = subprocess.run(["dumpe2fs", spec], capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"dumpe2fs {spec}: {proc.stderr.strip()}")
    block = count = 0
    free: list[tuple[int, int]] = []
    for line in proc.stdout.splitlines():
        if line.startswith("Block size:"):
            block = int(line.split(":")[1])
        elif line.startswith("Block count:"):
            count = int(line.split(":")[1])
        elif line.startswith("  Free blocks: "):
            for item in line.split(":", 1)[1].split(","):
                first, _, last = item.strip().partition("-")
                if first:
                    free.append((int(first), int(last or first)))
    if not block or not count:
        raise RuntimeError(f"dumpe2fs {spec}: no block size or count")
    used: list[tuple[int, int]] = []
    cursor = 0
    for lo, hi in sorted(free):
        if lo > cursor:
            used.append((cursor * block, (lo - cursor) * block))
        cursor = max(cursor, hi + 1)
    if cursor < count:
        used.append((cursor * block, (count - cursor) * block))
    return used


def _fat_used(read: Callable[[int, int], bytes], size: int) -> list[tuple[int, int]]:
    """Boot sector, FATs and root directory, then every cluster the FAT does not mark free."""
    bs = read(0, 512)
    bps, spc, reserved, nfats, root_entries, total16 = struct.unpack_from("<HBHBHH", bs, 11)
    fat16_size, total32, fat32_size = struct.unpack_from("<H", bs, 22)[0], *struct.unpack_from("<II", bs, 32)
    fat_sectors = fat16_size or fat32_size
    total = total16 or total32
    root_sectors = (root_entries * 32 + bps - 1) // bps
    data_start = reserved + nfats * fat_sectors + root_sectors
    clusters = (total - data_start) // spc
    bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
    fat = read(reserved * bps, fat_sectors * bps)
    runs = [(0, data_start * bps)]
    csize = spc * bps
    for c in range(2, clusters + 2):
        if bits == 32:
            entry = struct.unpack_from("<I", fat, c * 4)[0] & 0x0FFFFFFF
        elif bits == 16:
            entry = struct.unpack_from("<H", fat, c * 2)[0]
        else:
            pair = struct.unpack_from("<H", fat, c * 3 // 2)[0]
            entry = pair >> 4 if c & 1 else pair & 0xFFF
        if entry:
            runs.append(((data_start + (c - 2) * spc) * bps, csize))
    return runs
