"""Chunks: cut by content (FastCDC 2020), named by their BLAKE3 digest, stored as zstd frames.

Content-defined cut points move with the data, so an insertion shifts only the chunks around it and
two disks that share most of their bytes share most of their chunks. The id is the digest of the
*uncompressed* bytes: the same content is one chunk whatever compressed it, and every reader can
verify what it got without trusting the writer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import blake3
import zstandard
from pyfastcdc import FastCDC

# ~640 KiB on average (FastCDC's average is avg + min): small enough that a changed file costs a
# few chunks, large enough that a 1 TB disk is ~1.6 M chunks and per-chunk overhead stays small.
MIN_SIZE = 128 * 1024
AVG_SIZE = 512 * 1024
MAX_SIZE = 2 * 1024 * 1024
LEVEL = 1  # zstd level: ~1 GB/s per core, the level the benchmark's `zstd -1` pipeline uses

_ID = re.compile(r"^[0-9a-f]{64}$")
_ZEROS = bytes(MAX_SIZE)


class CorruptChunk(Exception):
    """A blob that does not decompress, or whose content does not hash to its id."""

    def __init__(self, chunk_id: str, reason: str) -> None:
        self.chunk_id = chunk_id
        self.reason = reason
        super().__init__(f"chunk {chunk_id}: {reason}")


@dataclass(frozen=True, slots=True)
class Piece:
    """One cut: ``length`` bytes at ``offset`` of the source, and a view of them."""

    offset: int
    length: int
    data: memoryview


def chunk_id(data: bytes | memoryview) -> str:
    # blake3 releases the GIL on large inputs, so hashing threads run in parallel.
    return blake3.blake3(data, max_threads=1).hexdigest()


def is_chunk_id(text: str) -> bool:
    return bool(_ID.match(text))


def is_zero(data: bytes | memoryview) -> bool:
    """All-zero? (copied out and memcmp'd: memoryview equality goes item by item, 20x slower)"""
    n = len(data)
    if n > MAX_SIZE or data[:64] != _ZEROS[: min(n, 64)] or data[-64:] != _ZEROS[: min(n, 64)]:
        return False  # most data fails here, on its first or last bytes
    return bytes(data) == _ZEROS[:n]


def cut(buf: memoryview, base: int = 0) -> Iterator[Piece]:
    """Cut ``buf`` (the source bytes from offset ``base``) into content-defined pieces."""
    chunker = FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE)
    for c in chunker.cut_buf(buf):
        yield Piece(base + c.offset, c.length, buf[c.offset : c.offset + c.length])


class Codec:
    """zstd in and out; one per thread (zstandard's contexts are not thread-safe)."""

    def __init__(self, level: int = LEVEL) -> None:
        self._c = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
        self._d = zstandard.ZstdDecompressor()

    def pack(self, data: bytes | memoryview) -> bytes:
        return self._c.compress(data)

    def unpack(self, blob: bytes | memoryview, expected_id: str) -> bytes:
        """The chunk's bytes, verified against its id, else CorruptChunk naming it."""
        self._check_frame(blob, expected_id)
        try:
            data = self._d.decompressobj().decompress(blob)
        except zstandard.ZstdError as exc:
            raise CorruptChunk(expected_id, f"does not decompress: {exc}") from None
        if chunk_id(data) != expected_id:
            raise CorruptChunk(expected_id, "content does not match its digest")
        return data

    def verify(self, blob: bytes | memoryview, expected_id: str) -> int:
        """Check a blob (its declared size bounded first): its size. Two calls that each release
        the GIL -- a server verifying uploads in threads keeps both cores busy."""
        return len(self.unpack(blob, expected_id))

    @staticmethod
    def _check_frame(blob: bytes | memoryview, expected_id: str) -> None:
        """A frame must declare its size, and no chunk is larger than MAX_SIZE: nothing is
        decompressed into memory before that is known (a hostile blob cannot balloon)."""
        try:
            size = zstandard.frame_content_size(blob)
        except zstandard.ZstdError as exc:
            raise CorruptChunk(expected_id, f"not a zstd frame: {exc}") from None
        if not 0 <= size <= MAX_SIZE:
            raise CorruptChunk(expected_id, f"declared size {size} is not 0..{MAX_SIZE}")


_local = threading.local()


def thread_codec() -> Codec:
    """This thread's Codec (made on first use): pools share code, not zstd contexts."""
    codec: Codec | None = getattr(_local, "codec", None)
    if codec is None:
        codec = _local.codec = Codec()
    return codec
