"""Backup: read a disk or one partition, cut it into content-defined chunks, send only the chunks
the store lacks, and return the manifest that rebuilds it.

The source is memory-mapped; the main thread walks it in order (sequential reads, the stream
digest) while a thread pool hashes, compresses and uploads -- BLAKE3, zstd and the HTTP client
release the GIL, so both cores work. A chunk already in the store (from this disk's last backup,
or any other machine's) costs its hash and one "missing?" round trip per batch, nothing more.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import blake3

from dpm_agent.deploy.device import Device
from dpm_agent.deploy.fs import Volume, used_extents
from dpm_agent.deploy.layout import DiskLayout, Partition
from dpm_imagefmt.chunks import Piece, chunk_id, cut, is_zero, thread_codec
from dpm_imagefmt.manifest import Extent, Manifest
from dpm_imagefmt.store import ChunkStore
from dpm_schemas import E

BATCH = 48  # pieces per "missing?" round trip (~30 MB)
UPLOAD_BYTES = 8 * 1024 * 1024  # compressed bytes per upload request
SHIPPERS = 2  # batches asking "missing?" and uploading at once (the server verifies them in parallel)
Progress = Callable[[int, int, int], None]  # (bytes read, bytes to read, bytes sent)


@dataclass
class Stats:
    read_bytes: int = 0
    sent_bytes: int = 0  # compressed bytes uploaded
    sent_chunks: int = 0
    reused_chunks: int = 0
    zero_bytes: int = 0
    seconds: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


HEARTBEAT = 15.0  # seconds between lease renewals while reading (DPM_API_BACKUP_LEASE is at least 60)


def heartbeat(renew: Callable[[], None], report: Callable[[int, int], None] | None) -> Progress:
    """Progress that also renews the backup's lease on its image name every HEARTBEAT seconds:
    a long run of zeros, or of chunks the store has, sends nothing that would renew it, and the
    lease is short so that a client that died frees the name soon (DPM-E160)."""
    last = [time.monotonic()]

    def progress(done: int, total: int, _sent: int) -> None:
        if report:
            report(done, total)
        if time.monotonic() - last[0] >= HEARTBEAT:
            last[0] = time.monotonic()
            renew()

    return progress


def source_of(layout: DiskLayout, number: int | None, ignore_hidden: bool) -> Partition | None:
    if number is None:
        return None
    part = layout.partition(number, ignore_hidden=ignore_hidden)
    if part is None or part.extended:
        have = ", ".join(str(n) for n, p in layout.numbering(ignore_hidden=ignore_hidden) if not p.extended)
        raise E.PARTITION_NOT_FOUND(disk=layout.device, partition=number, available=have or "no partitions")
    return part


def plan(dev: Device, layout: DiskLayout, part: Partition | None, mode: str) -> list[tuple[int, int]]:
    """The byte ranges of the device to capture. ``full``: all of the source. ``used``: what the
    filesystems use, plus everything outside the partitions (boot code, tables, gaps, GPT tail)."""
    ss = dev.sector_size
    if part is not None:
        base, size = part.start * ss, part.size * ss
        if mode == "full":
            return [(base, size)]
        runs = _used(dev, part, base, size)
        return [(base + o, n) for o, n in runs] if runs is not None else [(base, size)]
    if mode == "full":
        return [(0, dev.size)]
    out: list[tuple[int, int]] = []
    cursor = 0
    for p in sorted((p for p in layout.partitions if not p.extended), key=lambda p: p.start):
        base, size = p.start * ss, p.size * ss
        if base > cursor:
            out.append((cursor, base - cursor))
        runs = _used(dev, p, base, size)
        out.extend((base + o, n) for o, n in runs) if runs is not None else out.append((base, size))
        cursor = max(cursor, base + size)
    if cursor < dev.size:
        out.append((cursor, dev.size - cursor))
    return out


def _used(dev: Device, part: Partition, base: int, size: int) -> list[tuple[int, int]] | None:
    return used_extents(part.filesystem, Volume(dev.path, base, size, part.number, dev.block))


def backup(
    dev: Device,
    layout: DiskLayout,
    store: ChunkStore,
    *,
    partition: int | None = None,
    ignore_hidden: bool = False,
    mode: str = "full",
    meta: dict[str, str] | None = None,
    progress: Progress | None = None,
    workers: int = 3,
) -> tuple[Manifest, Stats]:
    if mode not in ("full", "used"):
        raise ValueError(f"mode {mode!r}")
    part = source_of(layout, partition, ignore_hidden)
    ranges = plan(dev, layout, part, mode)
    base = part.start * dev.sector_size if part is not None else 0
    total = sum(n for _, n in ranges)
    stats, started = Stats(), time.monotonic()
    digest = blake3.blake3()
    extents: list[Extent] = []
    seen: set[str] = set()

    def ident(piece: Piece) -> str | None:
        return None if is_zero(piece.data) else chunk_id(piece.data)

    def pack(cid: str, piece: Piece) -> tuple[str, bytes]:
        return cid, thread_codec().pack(piece.data)

    def upload(packed: list[Future[tuple[str, bytes]]]) -> int:
        """One batch's new chunks, in requests of about UPLOAD_BYTES (not one per chunk)."""
        group: list[tuple[str, bytes]] = []
        size = sent = 0
        for f in packed:
            group.append(f.result())
            size += len(group[-1][1])
            if size >= UPLOAD_BYTES:
                store.put_many(group)
                sent, group, size = sent + size, [], 0
        if group:
            store.put_many(group)
            sent += size
        return sent

    fd = os.open(dev.path, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, dev.size, prot=mmap.PROT_READ) if dev.size else None
    finally:
        os.close(fd)  # the mapping keeps its own reference

    def ship(new: list[tuple[str, Piece]]) -> tuple[int, int]:
        """Ask which of a batch's new chunks the store lacks, then pack and upload those: off the
        main loop, so reading and hashing the next batch never waits for a round trip."""
        missing = store.missing([cid for cid, _ in new])
        packed = [pool.submit(pack, cid, piece) for cid, piece in new if cid in missing]
        return len(packed), upload(packed) if packed else 0

    try:
        with (
            ThreadPoolExecutor(workers, thread_name_prefix="backup") as pool,
            ThreadPoolExecutor(SHIPPERS, thread_name_prefix="ship") as shipper,
        ):
            pending: list[tuple[int, Future[tuple[int, int]]]] = []

            def settle(entry: tuple[int, Future[tuple[int, int]]]) -> None:
                offered, fut = entry
                sent_chunks, sent_bytes = fut.result()
                stats.sent_chunks += sent_chunks
                stats.reused_chunks += offered - sent_chunks
                stats.sent_bytes += sent_bytes

            for batch in _batches(mm, ranges):
                ids = list(pool.map(ident, batch))
                new: list[tuple[str, Piece]] = []
                for piece, cid in zip(batch, ids, strict=True):  # in order: the digest, sequential reads
                    digest.update(piece.data)
                    _append(extents, Extent(piece.offset - base, piece.length, cid))
                    stats.read_bytes += piece.length
                    if cid is None:
                        stats.zero_bytes += piece.length
                    elif cid not in seen:
                        seen.add(cid)
                        new.append((cid, piece))
                if new:
                    pending.append((len(new), shipper.submit(ship, new)))
                while len(pending) > SHIPPERS:  # bound what is in flight (memory, not order)
                    settle(pending.pop(0))
                if progress:
                    progress(stats.read_bytes, total, stats.sent_bytes)
            for entry in pending:
                settle(entry)
    finally:
        if mm is not None:
            with contextlib.suppress(BufferError):  # views still alive: the mapping goes with them
                mm.close()
    stats.seconds = time.monotonic() - started
    manifest = Manifest(
        source="partition" if part is not None else "disk",
        mode=mode,
        size=part.size * dev.sector_size if part is not None else dev.size,
        sector_size=dev.sector_size,
        layout=layout.to_dict(),
        partition=None if part is None else {"number": part.number, "type": part.type, "size": part.size},
        extents=tuple(extents),
        digest=digest.hexdigest(),
        meta=dict(meta or {}),
    )
    return manifest, stats


def _batches(mm: mmap.mmap | None, ranges: list[tuple[int, int]]) -> Iterator[list[Piece]]:
    if mm is None:
        return
    view = memoryview(mm)
    batch: list[Piece] = []
    try:
        for off, n in ranges:
            for piece in cut(view[off : off + n], off):
                batch.append(piece)
                if len(batch) == BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch
    finally:
        view.release()


def _append(extents: list[Extent], e: Extent) -> None:
    """Adjacent runs of zeros become one extent (a blank 1 TB disk is a one-line manifest)."""
    if e.chunk is None and extents and extents[-1].chunk is None and extents[-1].end == e.offset:
        extents[-1] = Extent(extents[-1].offset, extents[-1].length + e.length, None)
    else:
        extents.append(e)
