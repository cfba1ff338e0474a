"""A committed manifest, checked before anything is stored (pure; blocking, so run it off the loop).

A commit used to decode the manifest on the event loop and answer 500 for a blob that was not zstd
or not the expected JSON. Now ``check_manifest`` decodes and validates every field, and anything
wrong is DPM-E117 with nothing written. The bounds come first, so the parser never meets a bomb or
a nesting that exhausts the stack.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import zstandard
from pydantic import ValidationError

from dpm_imagefmt.chunks import is_chunk_id
from dpm_imagefmt.manifest import Manifest
from dpm_imager.domain.transfers import Transfer
from dpm_schemas import E
from dpm_schemas.events import ImageCaptured

log = logging.getLogger(__name__)

SOURCES = ("disk", "partition")
MODES = ("full", "used")
MAX_TEXT = 1 << 30  # decompressed bytes of a manifest (a 1 TiB disk in 2 MiB chunks is ~40 MB of JSON)
MAX_DEPTH = 16  # brackets a manifest nests (it needs about 5): deeper is an attack on the parser
MAX_BYTES = 1 << 62  # sizes the log and the read models (bigint) can hold
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, unrolled (no backtracking)
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check_manifest(blob: bytes, image: str) -> Manifest:
    """Decode and validate a committed manifest. Any failure at all is the client's manifest,
    DPM-E117, never a 500: whatever a hostile document makes the decoder raise (OverflowError for
    ``1e400``, ...) is caught and logged."""
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
    return _extents_problem(m)


def _extents_problem(m: Manifest) -> str | None:
    end = 0
    for e in m.extents:
        if e.offset < end or e.length <= 0 or e.end > m.size:
            return f"extent ({e.offset}, {e.length}) overlaps, is empty, or lies beyond the source"
        if not (e.chunk is None or (isinstance(e.chunk, str) and is_chunk_id(e.chunk))):
            return f"extent at {e.offset} names {str(e.chunk)[:70]!r}, not a chunk id"
        end = e.end
    return None


def captured(t: Transfer, manifest: Manifest, mid: str, stored_bytes: int) -> ImageCaptured:
    """The commit's event: the image's name moves to manifest ``mid``."""
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


def check_chunk_ids(ids: Iterable[str]) -> None:
    """Refuse ids that are not chunk ids (BLAKE3, 64 lower-case hex digits)."""
    if not all(is_chunk_id(c) for c in ids):
        raise E.IMAGE_INVALID(reason="chunk ids are 64 lower-case hex digits")


def check_part_of(manifest: Manifest, ids: Iterable[str], image: str) -> None:
    """A restore token reads its own image, nothing else: every id must be one of ``manifest``'s."""
    foreign = next((c for c in ids if c not in manifest.chunk_ids), None)
    if foreign is not None:
        raise E.IMAGE_INVALID(reason=f"chunk {foreign[:16]}... is not part of image {image}")
