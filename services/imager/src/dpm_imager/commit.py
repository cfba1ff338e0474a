"""The commit of a backup: the manifest checked before anything is stored, once per transfer.

A commit used to decode the manifest on the event loop, answer 500 for a blob that was not zstd or
not the expected JSON (leaving the stored manifest behind), record one ImageCaptured per parallel
call, and accept any chunk id present in the store. Now:

- ``check_manifest`` (a worker thread) decodes and validates every field; anything wrong is
  DPM-E117 and nothing is written.
- One commit per transfer: a per-transfer lock in this process, and the image stream's version
  on the append, so a second replica committing the same transfer meets a conflict (DPM-E118).
- Vouched chunks: a manifest may name only chunks this transfer uploaded, or that its ``missing``
  call reported present (DPM-E119). That keeps dedup and resume (an unchanged re-backup uploads
  nothing, but asks about every chunk) and stops a client from naming chunks it never showed it
  has. Chunk ids are BLAKE3 of the content, so asking about an id is a claim to hold that content;
  the ids of other machines' images are never shown to a backup token.
"""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Iterable
from uuid import UUID

import zstandard
from pydantic import ValidationError

from dpm_imagefmt.chunks import is_chunk_id
from dpm_imagefmt.manifest import Manifest
from dpm_imager.state import Transfer
from dpm_runtime.eventlog import NO_STREAM, Conn, EventLog
from dpm_schemas import E, subjects
from dpm_schemas.events import ImageCaptured, TransferAborted
from dpm_schemas.ids import stream_id

SCHEMA = "imager"
log = logging.getLogger(__name__)

# Chunks a backup transfer may name: written by the data plane as it goes (a guard of the write
# side, like a unique index, not a read model); dropped when the transfer ends.
DDL = [
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.vouched (transfer_id uuid NOT NULL, chunk bytea NOT NULL,"
    " PRIMARY KEY (transfer_id, chunk))",
]

SOURCES = ("disk", "partition")
MODES = ("full", "used")


MAX_TEXT = 1 << 30  # decompressed bytes of a manifest (a 1 TiB disk in 2 MiB chunks is ~40 MB of JSON)
MAX_DEPTH = 16  # brackets a manifest nests (it needs about 5): deeper is an attack on the parser
MAX_BYTES = 1 << 62  # sizes the log and the read models (bigint) can hold
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, unrolled (no backtracking)
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check_manifest(blob: bytes, image: str) -> Manifest:
    """Decode and validate a committed manifest (blocking: run it off the event loop). Any failure
    at all is the client's manifest, DPM-E117, never a 500: the bounds come first, so the parser
    never meets a bomb or a nesting that exhausts the stack, and whatever else a hostile document
    makes the decoder raise (OverflowError for ``1e400``, ...) is caught and logged."""
    try:
        _bounded(zstandard.ZstdDecompressor().decompress(blob, max_output_size=MAX_TEXT))
        manifest = Manifest.decode(blob)
    except Exception as exc:
        log.info("manifest for %s refused: %s: %s", image, type(exc).__name__, str(exc)[:200])
        raise E.MANIFEST_INVALID(image=image, reason=f"unreadable ({type(exc).__name__}: {exc})"[:300]) from None
    problem = _problem(manifest)
    if problem is not None:
        raise E.MANIFEST_INVALID(image=image, reason=problem)
    return manifest


def _bounded(text: bytes) -> None:
    """Refuse a document nested deeper than MAX_DEPTH (brackets inside strings do not count): each
    pass drops the innermost pairs, so whatever is left after MAX_DEPTH passes is too deep."""
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        brackets = _PAIR.sub(b"", brackets)
    if brackets:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels (or unbalanced)")


def _problem(m: Manifest) -> str | None:
    if m.source not in SOURCES or m.mode not in MODES:
        return f"source {m.source!r} / mode {m.mode!r} (expected disk|partition, full|used)"
    if not (0 <= m.size <= MAX_BYTES and 512 <= m.sector_size <= 1 << 16) or m.sector_size & (m.sector_size - 1):
        return f"size {m.size} / sector size {m.sector_size}"
    if not isinstance(m.layout, dict) or not (m.partition is None or isinstance(m.partition, dict)):
        return "layout and partition are JSON objects"
    if not (m.layout.get("label") is None or isinstance(m.layout.get("label"), str)):
        return "layout.label is a string"
    if not (isinstance(m.digest, str) and is_chunk_id(m.digest)):
        return "digest is 64 lower-case hex digits"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in m.meta.items()):
        return "meta maps text to text"
    end = 0
    for e in m.extents:
        if e.offset < end or e.length <= 0 or e.end > m.size:
            return f"extent ({e.offset}, {e.length}) overlaps, is empty, or lies beyond the source"
        if not (e.chunk is None or (isinstance(e.chunk, str) and is_chunk_id(e.chunk))):
            return f"extent at {e.offset} names {str(e.chunk)[:70]!r}, not a chunk id"
        end = e.end
    return None


async def still_open(eventlog: EventLog, t: Transfer) -> int:
    """The image stream's version, unless this transfer already committed or aborted (DPM-E118)."""
    history = await eventlog.read_stream(stream_id(subjects.IMAGE, t.image_id))
    for rec in history:
        e = rec.event
        if isinstance(e, ImageCaptured | TransferAborted) and e.transfer_id == t.transfer_id:
            state = "committed" if isinstance(e, ImageCaptured) else "aborted"
            raise E.TRANSFER_COMMITTED(transfer=str(t.transfer_id), image=t.image, state=state)
    return history[-1].stream_version if history else NO_STREAM


def captured(t: Transfer, manifest: Manifest, mid: str, stored_bytes: int) -> ImageCaptured:
    try:
        return ImageCaptured(
            image_id=t.image_id,
            image=t.image,
            transfer_id=t.transfer_id,
            manifest=mid,
            source=manifest.source,
            mode=manifest.mode,
            size_bytes=manifest.size,
            captured_bytes=manifest.captured_bytes,
            stored_bytes=stored_bytes,
            chunk_count=len(manifest.chunk_ids),
            sector_size=manifest.sector_size,
            label=manifest.layout.get("label"),
            digest=manifest.digest,
            machine_id=t.machine_id,
            execution_id=t.execution_id,
        )
    except ValidationError as exc:  # e.g. a label with control characters
        raise E.MANIFEST_INVALID(image=t.image, reason=str(exc.errors()[0]["msg"])) from None


async def vouch(conn: Conn, transfer_id: UUID, chunks: Iterable[str]) -> None:
    """This transfer may name these chunks: it uploaded them, or asked and found them stored."""
    raw = [binascii.unhexlify(c) for c in chunks]
    if raw:
        await conn.execute(
            f"INSERT INTO {SCHEMA}.vouched (transfer_id, chunk) SELECT %s, unnest(%s::bytea[]) ON CONFLICT DO NOTHING",
            (transfer_id, raw),
        )


async def unvouched(conn: Conn, transfer_id: UUID, chunks: frozenset[str]) -> list[str]:
    """The chunks of ``chunks`` this transfer never uploaded nor asked about, sorted."""
    rows = await (
        await conn.execute(
            f"SELECT chunk FROM {SCHEMA}.vouched WHERE transfer_id = %s AND chunk = ANY(%s::bytea[])",
            (transfer_id, [binascii.unhexlify(c) for c in chunks]),
        )
    ).fetchall()
    seen = {bytes(r[0]).hex() for r in rows}
    return sorted(chunks - seen)


async def forget(conn: Conn, transfer_id: UUID) -> None:
    await conn.execute(f"DELETE FROM {SCHEMA}.vouched WHERE transfer_id = %s", (transfer_id,))


async def forget_ended(conn: Conn) -> None:
    """The vouchers of transfers that ended or expired without a commit or abort reaching us."""
    await conn.execute(
        f"DELETE FROM {SCHEMA}.vouched v USING {SCHEMA}.transfers t WHERE t.transfer_id = v.transfer_id"
        " AND (t.state <> 'open' OR t.expires_at < now())"
    )
