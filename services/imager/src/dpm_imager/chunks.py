"""Chunks and manifests moving through the data plane, for one authorised transfer each.

Backup: ``start`` (free-space check) -> ``missing`` (which of these ids are new) -> ``put`` each new
chunk (verified before it is stored) -> commit.py. Restore: ``manifest`` then ``get`` chunks (only
those the manifest names). Verify: the imager re-reads the image's chunks itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from dpm_imagefmt.chunks import CorruptChunk
from dpm_imagefmt.store import pack_records
from dpm_imager.adapters import gc
from dpm_imager.adapters.dataplane import Imager
from dpm_imager.domain.manifest import check_chunk_ids, check_part_of
from dpm_imager.domain.transfers import Transfer
from dpm_schemas import E
from dpm_schemas.events import ImageVerified

MAX_FETCH = 64  # chunks per fetch request


def start(imager: Imager, t: Transfer, planned_bytes: int) -> int:
    """Before the first chunk: room for the planned bytes (times the free factor), or DPM-E159."""
    free = imager.free_bytes()
    imager.room(free, int(planned_bytes * imager.free_factor))
    imager.progress.planned(t.transfer_id, planned_bytes)
    return free


async def missing(imager: Imager, t: Transfer, ids: list[str]) -> list[str]:
    """Which of ``ids`` the store lacks; the others this backup may now name."""
    check_chunk_ids(ids)
    absent = await imager.offload(imager.store.missing, ids)
    await imager.vouch(t, set(ids) - absent)
    return sorted(absent)


async def put(imager: Imager, t: Transfer, items: Sequence[tuple[str, bytes | memoryview]]) -> None:
    """Store chunks, each verified before it is stored, in parallel; a corrupt one is named and
    refused (DPM-E116), the others are kept. Blobs may be views into the request body (no copies)."""
    size = sum(len(blob) for _, blob in items)
    imager.room(imager.free_bytes(), size)
    new = await imager.offload(imager.store.missing, [cid for cid, _ in items])  # what this upload adds
    results = await asyncio.gather(
        *(imager.offload(imager.store.put, cid, blob) for cid, blob in items), return_exceptions=True
    )
    for (cid, _), outcome in zip(items, results, strict=True):
        if isinstance(outcome, CorruptChunk | KeyError):  # verified on write: never enters the store
            reason = outcome.reason if isinstance(outcome, CorruptChunk) else "not a chunk id"
            raise E.CHUNK_CORRUPT(chunk=cid, image=t.image, reason=f"{reason} (upload refused)")
        if isinstance(outcome, BaseException):
            raise outcome
    # In PostgreSQL, not the process: a commit after an imager restart counts what came before it.
    await imager.vouch_stored(t, {cid: len(blob) if cid in new else 0 for cid, blob in items})
    await imager.progress.moved(t, size)


async def manifest(imager: Imager, t: Transfer) -> tuple[str, bytes]:
    """The id and the stored bytes of the manifest a restore writes."""
    mid = await imager.manifest_of(t)
    decoded = await imager.offload(imager.manifest, mid)
    imager.progress.planned(t.transfer_id, decoded.captured_bytes)
    return mid, await imager.offload(imager.store.get_manifest, mid)


async def get(imager: Imager, t: Transfer, ids: list[str]) -> list[bytes]:
    """The blobs of ``ids``, in the order asked, all of them chunks of the restore's image."""
    decoded = await imager.offload(imager.manifest, await imager.manifest_of(t))
    check_part_of(decoded, ids, t.image)
    try:
        blobs = await imager.offload(imager.store.get_many, ids)
    except KeyError as exc:
        raise E.CHUNK_CORRUPT(chunk=str(exc.args[0]), image=t.image, reason="missing from the store") from None
    return blobs


async def get_one(imager: Imager, t: Transfer, chunk: str) -> bytes:
    (blob,) = await get(imager, t, [chunk])
    await imager.progress.moved(t, len(blob))
    return blob


async def get_packed(imager: Imager, t: Transfer, ids: list[str]) -> bytes:
    """Many blobs in one answer (records as for uploads), for a restore."""
    if len(ids) > MAX_FETCH:
        raise E.INVALID_REQUEST(reason=f"at most {MAX_FETCH} chunks per fetch")
    out = pack_records(zip(ids, await get(imager, t, ids), strict=True))
    await imager.progress.moved(t, len(out))
    return out


@dataclass(frozen=True)
class Verified:
    image: str
    manifest: str
    chunks: int
    corrupt: list[str]


async def verify(imager: Imager, t: Transfer) -> Verified:
    """Re-read every chunk of the image (gc.verify quarantines corrupt ones); ImageVerified says what was found."""
    mid = await imager.manifest_of(t)
    decoded = await imager.offload(imager.manifest, mid)
    bad = await imager.offload(gc.verify, imager.store, decoded)
    count = len(decoded.chunk_ids)
    await imager.append(t, ImageVerified(image_id=t.image_id, image=t.image, manifest=mid, chunk_count=count,
                                         corrupt=tuple(bad)))  # fmt: skip
    return Verified(t.image, mid, count, bad)
