"""Filesystems: what a partition holds (by its superblock's magic) -- the disk viewer's column,
and which used-block map a used-sector backup can ask for."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Volume:
    """A partition as the used-block readers see it: ``size`` bytes at ``base`` of the disk at
    ``disk`` (a block device or an image file), partition ``number``."""

    disk: str
    base: int
    size: int
    number: int
    block: bool

    def read(self, offset: int, length: int) -> bytes:
        with open(self.disk, "rb", buffering=0) as f:
            return os.pread(f.fileno(), length, self.base + offset)

    @contextlib.contextmanager
    def path(self) -> Iterator[str]:
        """A path holding just this partition, for tools that take no offset: the kernel's
        partition node, else a read-only loop device over the byte range (root only)."""
        if self.block:
            for candidate in (f"{self.disk}{self.number}", f"{self.disk}p{self.number}"):
                if os.path.exists(candidate) and stat.S_ISBLK(os.stat(candidate).st_mode):
                    yield candidate
                    return
        loop = subprocess.run(
            ["losetup", "-f", "--show", "-r", "-o", str(self.base), "--sizelimit", str(self.size), self.disk],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        try:
            yield loop
        finally:
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False, timeout=60)


def used_extents(fs: str, volume: Volume) -> list[tuple[int, int]] | None:
    """The byte ranges ``(offset, length)`` of the partition its filesystem uses, or None when dpm
    cannot tell (the partition is then captured whole -- always correct, only larger)."""
    try:
        if fs in ("ext2", "ext3", "ext4"):
            runs = _ext_used(f"{volume.disk}?offset={volume.base}")  # e2fsprogs reads at an offset itself
        elif fs == "vfat":
            runs = _fat_used(volume.read, volume.size)
        elif fs == "ntfs":
            runs = _ntfs_used(volume)
        elif fs == "swap":
            runs = [(0, 4096)]  # the header; the rest is scratch, meaningless after a reboot
        else:
            return None
    except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
        log.warning("used blocks of %s partition %d unknown (%s): captured whole", fs, volume.number, exc)
        return None
    return merge(runs, volume.size)


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


def _ntfs_used(volume: Volume) -> list[tuple[int, int]]:
    """The cluster bitmap ($Bitmap, MFT record 6) as ntfs-3g's ``ntfscat`` reads it, plus the boot
    sector and its backup in the partition's last sector (outside the clusters)."""
    boot = volume.read(0, 512)
    bps, spc_raw = struct.unpack_from("<HB", boot, 11)
    spc = 2 ** (256 - spc_raw) if spc_raw > 0x80 else spc_raw
    cluster = bps * spc
    if not cluster:
        raise ValueError("NTFS boot sector without a cluster size")
    with volume.path() as path:
        bitmap = subprocess.run(["ntfscat", "-i", "6", path], capture_output=True, check=True, timeout=600).stdout
    runs = [(0, cluster), (volume.size - bps, bps)]
    for m in re.finditer(rb"\xff+|[^\x00\xff]", bitmap):
        first = m.start() * 8
        if m.group()[0] == 0xFF:
            runs.append((first * cluster, len(m.group()) * 8 * cluster))
        else:
            bits = m.group()[0]
            runs += [((first + i) * cluster, cluster) for i in range(8) if bits >> i & 1]
    return runs


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
