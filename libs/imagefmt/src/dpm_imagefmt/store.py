"""The chunk store: content-addressed blobs in a directory tree, and the port both sides talk to.

``ChunkStore`` is what a backup writes to and a restore reads from; ``DirStore`` keeps blobs as
files (``chunks/ab/<id>``) and is the imager's backend and the tests' twin of the HTTP transport.
A blob is verified before it is stored (a corrupt upload never enters the store) and written to a
temporary file then renamed, so a crash leaves whole chunks or none. Durability is bought once per
backup (``sync``), not per chunk: a backup is only committed after its chunks are on disk.
Every backed-up disk is in here, so the store is its owner's alone: directories 0700 and files
0600, created with that mode (never written wider and narrowed afterwards).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from dpm_imagefmt.chunks import CorruptChunk, is_chunk_id, thread_codec
from dpm_imagefmt.sysio import syncfs


class ChunkStore(Protocol):
    def missing(self, ids: Iterable[str]) -> set[str]:
        """The ids of ``ids`` the store does not hold."""
        ...

    def put(self, chunk: str, blob: bytes | memoryview) -> None:
        """Store a zstd blob under its id; raises CorruptChunk if it does not match."""
        ...

    def get(self, chunk: str) -> bytes:
        """The zstd blob of a chunk; KeyError if absent."""
        ...

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """Several chunks at once (one request over HTTP)."""
        ...

    def get_many(self, chunks: list[str]) -> list[bytes]:
        """Several blobs at once, in order."""
        ...


_RECORD = struct.Struct(">32sI")  # raw id, blob length; then the blob


def pack_records(items: Iterable[tuple[str, bytes]]) -> bytes:
    """Chunks in one body: (32-byte id, 4-byte length, blob) after each other."""
    return b"".join(_RECORD.pack(bytes.fromhex(cid), len(blob)) + blob for cid, blob in items)


def unpack_records(body: bytes, limit: int) -> list[tuple[str, memoryview]]:
    """The records of a body (views into it, no copies); ValueError on a truncated one or a blob
    over ``limit`` bytes."""
    out: list[tuple[str, memoryview]] = []
    at, view = 0, memoryview(body)
    while at < len(body):
        if at + _RECORD.size > len(body):
            raise ValueError("truncated record header")
        raw, n = _RECORD.unpack_from(body, at)
        at += _RECORD.size
        if n > limit or at + n > len(body):
            raise ValueError(f"record of {n} bytes at {at} exceeds the body or the limit")
        out.append((raw.hex(), view[at : at + n]))
        at += n
    return out


DIR_MODE = 0o700
FILE_MODE = 0o600


class DirStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.chunks = root / "chunks"
        self.manifests = root / "manifests"

    def open(self) -> DirStore:
        for d in (self.root, self.chunks, self.manifests):
            d.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        self.root.chmod(DIR_MODE)  # a store left 0755 by an older version: nothing below is reachable now
        return self

    def path(self, chunk: str) -> Path:
        if not is_chunk_id(chunk):  # ids become paths: nothing but 64 hex digits gets near the disk
            raise KeyError(chunk)
        return self.chunks / chunk[:2] / chunk

    def missing(self, ids: Iterable[str]) -> set[str]:
        return {c for c in ids if not self.path(c).exists()}

    def put(self, chunk: str, blob: bytes | memoryview) -> None:
        target = self.path(chunk)
        if target.exists():
            return
        thread_codec().verify(blob, chunk)  # verify on write
        self._write(target, blob)

    def get(self, chunk: str) -> bytes:
        try:
            return self.path(chunk).read_bytes()
        except FileNotFoundError:
            raise KeyError(chunk) from None

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        for cid, blob in items:
            self.put(cid, blob)

    def get_many(self, chunks: list[str]) -> list[bytes]:
        return [self.get(c) for c in chunks]

    def verify(self, chunk: str) -> int:
        """Decompress and re-hash a stored chunk: its size, or CorruptChunk."""
        return thread_codec().verify(self.get(chunk), chunk)

    def quarantine(self, chunk: str) -> Path:
        """Move a corrupt chunk aside (kept for inspection): the store no longer has it, so the next
        backup holding that content uploads it again and heals every image that names it."""
        aside = self.root / "quarantine"
        aside.mkdir(exist_ok=True, mode=DIR_MODE)
        target = aside / f"{chunk}.{int(time.time())}"
        os.replace(self.path(chunk), target)
        return target

    def put_manifest(self, manifest: str, blob: bytes) -> None:
        if not is_chunk_id(manifest):
            raise KeyError(manifest)
        self._write(self.manifests / manifest, blob)

    def get_manifest(self, manifest: str) -> bytes:
        if not is_chunk_id(manifest):
            raise KeyError(manifest)
        try:
            return (self.manifests / manifest).read_bytes()
        except FileNotFoundError:
            raise KeyError(manifest) from None

    def chunk_ids(self) -> Iterator[str]:
        for sub in sorted(self.chunks.iterdir()):
            for f in sub.iterdir():
                if is_chunk_id(f.name):
                    yield f.name

    def manifest_ids(self) -> Iterator[str]:
        for f in self.manifests.iterdir():
            if is_chunk_id(f.name):
                yield f.name

    def delete(self, chunk: str) -> int:
        """Remove a chunk; the bytes freed (0 if it was not there)."""
        p = self.path(chunk)
        try:
            size = p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            return 0
        return size

    def delete_manifest(self, manifest: str) -> None:
        if is_chunk_id(manifest):
            with contextlib.suppress(FileNotFoundError):
                (self.manifests / manifest).unlink()

    def size_of(self, chunk: str) -> int:
        try:
            return self.path(chunk).stat().st_size
        except FileNotFoundError:
            return 0

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def sync(self) -> None:
        """Make every chunk written so far durable (one syncfs for the whole backup)."""
        syncfs(self.root)

    def _write(self, target: Path, blob: bytes | memoryview) -> None:
        target.parent.mkdir(exist_ok=True, mode=DIR_MODE)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # a leftover temporary file keeps its mode on open
            with open(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, target)
        except BaseException:  # a full disk, say: no hidden half-written file stays behind
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


__all__ = ["ChunkStore", "CorruptChunk", "DirStore"]
