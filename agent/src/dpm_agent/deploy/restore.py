"""Restore: check the target against the image first (nothing is written unless every check
passes), then write each extent in place -- chunks fetched ahead by a thread pool, verified
against their ids, zeros written as zeros -- and prove the whole with the stream digest."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from dpm_agent.deploy.gpt import grow_gpt
from dpm_agent.deploy.layout import DiskLayout
from dpm_imagefmt.chunks import CorruptChunk, thread_codec
from dpm_imagefmt.manifest import Extent, Manifest
from dpm_imagefmt.store import ChunkStore
from dpm_imagefmt.sysio import punch_hole
from dpm_schemas import E

FETCH = 16  # chunks per fetch request (~10 MB)
AHEAD = 4  # fetch requests in flight ahead of the writer
ZERO_BLOCK = 4 * 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes written, bytes to write)


@dataclass(frozen=True)
class Target:
    offset: int  # where the image's byte 0 goes on the device
    capacity: int


def preflight(
    manifest: Manifest, target: DiskLayout, *, partition: int | None = None, ignore_hidden: bool = False
) -> Target:
    """Every reason not to write, checked before the first write (seed catalogue BR-13/15/24/30/33)."""
    device = target.device
    if manifest.sector_size != target.sector_size:
        raise E.SECTOR_SIZE_MISMATCH(device=device, required=manifest.sector_size, actual=target.sector_size)
    if manifest.source == "disk":
        if partition is not None:
            raise E.IMAGE_INVALID(reason="a whole-disk image restores onto a disk, not a partition")
        if manifest.required_size > target.size:
            raise E.TARGET_TOO_SMALL(device=device, required=manifest.required_size, actual=target.size)
        return Target(0, target.size)
    if partition is None:
        raise E.IMAGE_INVALID(reason="a partition image needs the partition to restore onto")
    source_label = manifest.layout.get("label")
    if target.label != source_label:
        raise E.DISK_TYPE_MISMATCH(device=device, required=_label(source_label), actual=_label(target.label))
    part = target.partition(partition, ignore_hidden=ignore_hidden)
    if part is None or part.extended:
        have = ", ".join(str(n) for n, p in target.numbering(ignore_hidden=ignore_hidden) if not p.extended)
        raise E.PARTITION_NOT_FOUND(disk=device, partition=partition, available=have or "no partitions")
    size = part.size * target.sector_size
    required = max(manifest.required_size, manifest.size if manifest.mode == "full" else 0)
    if size < required:
        raise E.PARTITION_SIZE_MISMATCH(device=device, partition=partition, required=required, actual=size)
    wanted = (manifest.partition or {}).get("type")
    if wanted is not None and part.type != wanted:
        raise E.PARTITION_TYPE_MISMATCH(
            device=device, partition=partition, required=_ptype(wanted), actual=_ptype(part.type)
        )
    return Target(part.start * target.sector_size, size)


def _label(label: str | None) -> str:
    return {"dos": "MBR", "gpt": "GPT"}.get(label or "", "no partition table")


def _ptype(t: str) -> str:
    return t if len(t) > 2 else f"0x{int(t, 16):02X}"


def restore(
    path: str,
    target: Target,
    manifest: Manifest,
    store: ChunkStore,
    *,
    image: str = "",
    progress: Progress | None = None,
    workers: int = 3,
    grow_table: bool = False,
) -> float:
    """Write ``manifest`` at ``target``; the seconds it took. Raises CHUNK_CORRUPT naming the chunk
    (a bad chunk is found before it is written) or when the written stream's digest differs. With
    ``grow_table`` a whole-disk GPT image on a larger disk gets its backup table moved to the end
    (off by default: the restored bytes then equal the image's, byte for byte)."""
    started, done, total = time.monotonic(), 0, manifest.captured_bytes
    digest = blake3.blake3()
    zeros = bytes(ZERO_BLOCK)
    fd = os.open(path, os.O_WRONLY)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="restore") as pool:
            for extent, data in _fetched(pool, store, manifest.extents):
                at = target.offset + extent.offset
                if data is None:
                    zeroed = _zero_range(fd, at, extent.length)
                    for o in range(0, extent.length, ZERO_BLOCK):
                        block = memoryview(zeros)[: min(ZERO_BLOCK, extent.length - o)]
                        if not zeroed:
                            _pwrite_all(fd, block, at + o)
                        digest.update(block)
                else:
                    _pwrite_all(fd, memoryview(data), at)
                    digest.update(data)
                done += extent.length
                if progress:
                    progress(done, total)
        os.fsync(fd)
    except CorruptChunk as exc:
        raise E.CHUNK_CORRUPT(chunk=exc.chunk_id, image=image or "?", reason=exc.reason) from None
    finally:
        os.close(fd)
    if digest.hexdigest() != manifest.digest:
        raise E.CHUNK_CORRUPT(chunk="(whole image)", image=image or "?", reason="the written data's digest differs")
    if (
        grow_table
        and manifest.source == "disk"
        and manifest.layout.get("label") == "gpt"
        and target.capacity > manifest.size
    ):
        grow_gpt(path, manifest.sector_size, manifest.size, target.capacity)
    return time.monotonic() - started


def _fetched(
    pool: ThreadPoolExecutor, store: ChunkStore, extents: tuple[Extent, ...]
) -> Iterator[tuple[Extent, bytes | None]]:
    """Extents in order with their verified bytes: chunks fetched FETCH to a request, AHEAD
    requests in flight, each decoded and verified in its worker."""

    def load(group: list[Extent]) -> list[bytes | None]:
        ids = [e.chunk for e in group if e.chunk is not None]
        blobs = iter(store.get_many(ids) if ids else [])
        return [thread_codec().unpack(next(blobs), e.chunk) if e.chunk is not None else None for e in group]

    queue: deque[tuple[list[Extent], Future[list[bytes | None]]]] = deque()
    groups = _groups(extents)
    for group in groups:
        queue.append((group, pool.submit(load, group)))
        if len(queue) >= AHEAD:
            break
    while queue:
        group, fut = queue.popleft()
        nxt = next(groups, None)
        if nxt is not None:
            queue.append((nxt, pool.submit(load, nxt)))
        yield from zip(group, fut.result(), strict=True)


def _groups(extents: tuple[Extent, ...]) -> Iterator[list[Extent]]:
    group: list[Extent] = []
    chunks = 0
    for e in extents:
        group.append(e)
        chunks += e.chunk is not None
        if chunks >= FETCH:
            yield group
            group, chunks = [], 0
    if group:
        yield group


_BLKZEROOUT = 0x127F


def _zero_range(fd: int, offset: int, length: int) -> bool:
    """Zeros without writing them: BLKZEROOUT on a block device (the disk's write-zeroes), a hole
    punched in a disk-image file (it stays sparse). False: write the zeros instead."""
    try:
        if stat.S_ISBLK(os.fstat(fd).st_mode):
            fcntl.ioctl(fd, _BLKZEROOUT, struct.pack("QQ", offset, length))
            return True
        return punch_hole(fd, offset, length)
    except OSError:
        return False


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n
