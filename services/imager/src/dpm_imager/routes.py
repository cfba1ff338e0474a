"""The imager's data plane: chunks and manifests over HTTP, each call authorised by the token of
one transfer (opened by the api: TransferOpened), for one image and one direction.

Backup: ``start`` (free-space check) -> ``missing`` (which of these ids are new) -> ``PUT`` each new
chunk (verified before it is stored) -> ``commit`` the manifest: every chunk present, the store
synced, then ImageCaptured -- the only moment the image name moves to the new content. A backup
that stops before commit changes nothing anyone can see. Restore: ``manifest`` then ``GET`` chunks
(only those the manifest names). Verify: the imager re-reads the image's chunks itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from dpm_imagefmt.chunks import MAX_SIZE, CorruptChunk, is_chunk_id
from dpm_imagefmt.manifest import Manifest, manifest_id
from dpm_imagefmt.store import DirStore, pack_records, unpack_records
from dpm_imager import commit as commit_rules
from dpm_imager import gc, lifetime
from dpm_imager.progress import Progress
from dpm_imager.state import Transfer, current_manifest, live_manifests, transfer_by_token
from dpm_runtime.eventlog import ANY_VERSION, AppendResult, StreamConflict
from dpm_runtime.http import max_body
from dpm_runtime.service import Runtime
from dpm_schemas import DpmError, E, Event, Metadata, NewEvent, subjects
from dpm_schemas.events import ImageCaptured, ImageVerified, TransferAborted
from dpm_schemas.ids import stream_id

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])
T = TypeVar("T")

MAX_BLOB = MAX_SIZE + 128 * 1024  # zstd of an incompressible 2 MiB chunk is a little larger
MAX_MANIFEST = 256 * 1024 * 1024
MAX_IDS = 4096
MAX_BATCH = 32 * 1024 * 1024  # bytes of chunks per upload request
MAX_FETCH = 64  # chunks per fetch request
AUTH_TTL = 5.0  # seconds a checked token is trusted without asking PostgreSQL again


@dataclass
class Imager:
    """What the routes need, built by the bootstrap once the runtime is connected."""

    rt: Runtime
    store: DirStore
    progress: Progress
    reserve_bytes: int
    free_factor: float
    received: dict[UUID, int] = field(default_factory=dict)  # compressed bytes stored per backup
    manifests: dict[str, Manifest] = field(default_factory=dict)  # decoded, by id (small LRU)
    # Per-request costs that would dominate a chunk's: the token's transfer for a few seconds
    # (dropped at once on commit or abort), and the manifest a restore started with (pinned: a
    # backup committing meanwhile does not change what the restore is writing).
    authorized: dict[tuple[str, UUID], tuple[Transfer, float]] = field(default_factory=dict)
    pinned: dict[UUID, str] = field(default_factory=dict)
    locks: dict[UUID, asyncio.Lock] = field(default_factory=dict)
    renewing: set[UUID] = field(default_factory=set)  # transfers whose TransferRenewed is being appended
    # Verification and file I/O on threads of its own, as many as cores: CPU-bound work that must
    # neither starve nor be starved by whatever else uses the loop's default executor.
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="imager")
    )

    def offload(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        return asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    def forget(self, transfer_id: UUID) -> None:
        for key in [k for k in self.authorized if k[1] == transfer_id]:
            del self.authorized[key]
        self.pinned.pop(transfer_id, None)

    def commit_lock(self, transfer_id: UUID) -> asyncio.Lock:
        """One commit (or abort) of a transfer at a time in this process; replicas meet on the log."""
        if len(self.locks) > 10_000:
            self.locks = {k: v for k, v in self.locks.items() if v.locked()}
        return self.locks.setdefault(transfer_id, asyncio.Lock())

    def manifest(self, mid: str) -> Manifest:
        hit = self.manifests.get(mid)
        if hit is None:
            hit = Manifest.decode(self.store.get_manifest(mid))
            if len(self.manifests) > 64:
                self.manifests.pop(next(iter(self.manifests)))
            self.manifests[mid] = hit
        return hit


def _imager(request: Request) -> Imager:
    imager: Imager | None = getattr(request.app.state, "imager", None)
    if imager is None:
        raise E.NOT_READY(service="imager", reason="still connecting to PostgreSQL and NATS")
    return imager


async def _authorize(request: Request, transfer_id: UUID, direction: str) -> tuple[Imager, Transfer]:
    """The transfer of this call's token: known, of this direction, not closed, unexpired; a use
    that finds it in the last quarter of its idle time renews it (lifetime.renewal)."""
    imager = _imager(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise E.UNAUTHENTICATED()
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = datetime.now(UTC)
    cached = imager.authorized.get((digest, transfer_id))
    if cached is not None and time.monotonic() - cached[1] < AUTH_TTL and cached[0].expires_at > now:
        t: Transfer | None = cached[0]
    else:  # unknown here, stale, or expired as far as this replica knows (another may have renewed)
        t = await _lookup(imager, digest, transfer_id)
    if t is None or t.direction != direction:
        raise E.UNAUTHENTICATED()  # unknown or another direction's token: one answer for both
    if t.state == "aborted":
        raise E.TRANSFER_CLOSED(transfer=str(t.transfer_id), image=t.image, reason=t.reason or "aborted")
    if t.expires_at <= now:
        if t.renew_seconds is None:
            raise E.UNAUTHENTICATED()
        since = (t.expires_at - timedelta(seconds=t.renew_seconds)).isoformat(timespec="seconds")
        raise E.TRANSFER_EXPIRED(transfer=str(t.transfer_id), image=t.image, idle_since=since, idle=t.renew_seconds)
    if direction == "backup" and t.state != "open":
        raise E.IMAGE_BUSY(image=t.image, transfer=f"{t.transfer_id} ({t.state})")
    return imager, await _renew(imager, digest, t, now)


async def _renew(imager: Imager, digest: str, t: Transfer, now: datetime) -> Transfer:
    """Append the renewal a use calls for (one at a time per transfer in this process)."""
    event = lifetime.renewal(t, now)
    if event is None or t.transfer_id in imager.renewing:
        return t
    imager.renewing.add(t.transfer_id)
    try:
        await _append(imager, t, event)
    finally:
        imager.renewing.discard(t.transfer_id)
    renewed = dataclasses.replace(t, expires_at=event.expires_at)
    imager.authorized[(digest, t.transfer_id)] = (renewed, time.monotonic())
    return renewed


async def _lookup(imager: Imager, digest: str, transfer_id: UUID) -> Transfer | None:
    rt = imager.rt
    async with rt.pool.connection() as conn:
        t = await transfer_by_token(conn, digest, transfer_id)
    if t is None:  # opened a moment ago: let the read model catch up with the log once
        await rt.projections["transfers"].wait_for(await rt.eventlog.head(), timeout=3)
        async with rt.pool.connection() as conn:
            t = await transfer_by_token(conn, digest, transfer_id)
    if t is not None:
        if len(imager.authorized) > 10_000:
            imager.authorized.clear()
        imager.authorized[(digest, transfer_id)] = (t, time.monotonic())
    return t


class StartIn(BaseModel):
    planned_bytes: Annotated[int, Field(ge=0, le=commit_rules.MAX_BYTES)]  # unbounded, x free_factor overflowed


@router.post("/{transfer_id}/start")
async def start(transfer_id: UUID, body: StartIn, request: Request) -> dict[str, Any]:
    """Before the first chunk: room for the planned bytes (times the free factor), or DPM-E159."""
    imager, t = await _authorize(request, transfer_id, "backup")
    free = imager.store.free_bytes() - imager.reserve_bytes
    needed = int(body.planned_bytes * imager.free_factor)
    if free < needed:
        raise E.STORE_FULL(free=max(free, 0), required=needed)
    imager.progress.planned(t.transfer_id, body.planned_bytes)
    return {"free_bytes": free}


class IdsIn(BaseModel):
    ids: Annotated[list[str], Field(max_length=MAX_IDS)]


@router.post("/{transfer_id}/missing")
async def missing(transfer_id: UUID, body: IdsIn, request: Request) -> dict[str, list[str]]:
    imager, t = await _authorize(request, transfer_id, "backup")
    if not all(is_chunk_id(c) for c in body.ids):
        raise E.IMAGE_INVALID(reason="chunk ids are 64 lower-case hex digits")
    absent = await imager.offload(imager.store.missing, body.ids)
    await _vouch(imager, t, set(body.ids) - absent)  # present: this backup may name them
    return {"missing": sorted(absent)}


@router.put("/{transfer_id}/chunks/{chunk}", status_code=204)
@max_body(MAX_BLOB)
async def put_chunk(transfer_id: UUID, chunk: str, request: Request) -> Response:
    imager, t = await _authorize(request, transfer_id, "backup")
    if not is_chunk_id(chunk):
        raise E.IMAGE_INVALID(reason="chunk ids are 64 lower-case hex digits")
    blob = await _body(request, MAX_BLOB)
    if imager.store.free_bytes() - imager.reserve_bytes < len(blob):
        raise E.STORE_FULL(free=max(imager.store.free_bytes() - imager.reserve_bytes, 0), required=len(blob))
    try:
        await imager.offload(imager.store.put, chunk, blob)
    except CorruptChunk as exc:  # verified on write: a damaged upload never enters the store
        raise E.CHUNK_CORRUPT(chunk=chunk, image=t.image, reason=f"{exc.reason} (upload refused)") from None
    await _vouch(imager, t, [chunk])
    imager.received[t.transfer_id] = imager.received.get(t.transfer_id, 0) + len(blob)
    await imager.progress.moved(t, len(blob))
    return Response(status_code=204)


@router.post("/{transfer_id}/chunks", status_code=204)
@max_body(MAX_BATCH)
async def put_chunks(transfer_id: UUID, request: Request) -> Response:
    """Many chunks in one body (records: 32-byte id, 4-byte length, blob), each verified before it
    is stored, in parallel; a corrupt one is named and refused, the others are kept."""
    imager, t = await _authorize(request, transfer_id, "backup")
    body = await _body(request, MAX_BATCH)
    try:
        items = unpack_records(body, MAX_BLOB)
    except ValueError as exc:
        raise E.INVALID_REQUEST(reason=str(exc)) from None
    size = sum(len(blob) for _, blob in items)
    if imager.store.free_bytes() - imager.reserve_bytes < size:
        raise E.STORE_FULL(free=max(imager.store.free_bytes() - imager.reserve_bytes, 0), required=size)
    results = await asyncio.gather(
        *(imager.offload(imager.store.put, cid, blob) for cid, blob in items), return_exceptions=True
    )
    for (cid, _), outcome in zip(items, results, strict=True):
        if isinstance(outcome, CorruptChunk | KeyError):
            reason = outcome.reason if isinstance(outcome, CorruptChunk) else "not a chunk id"
            raise E.CHUNK_CORRUPT(chunk=cid, image=t.image, reason=f"{reason} (upload refused)")
        if isinstance(outcome, BaseException):
            raise outcome
    await _vouch(imager, t, [cid for cid, _ in items])
    imager.received[t.transfer_id] = imager.received.get(t.transfer_id, 0) + size
    await imager.progress.moved(t, size)
    return Response(status_code=204)


@router.post("/{transfer_id}/commit")
@max_body(MAX_MANIFEST)
async def commit(transfer_id: UUID, request: Request) -> dict[str, Any]:
    """The manifest is checked (off the loop) before anything is stored, and a transfer commits
    once: parallel commits wait for the first, then find it committed (DPM-E118)."""
    imager, t = await _authorize(request, transfer_id, "backup")
    blob = await _body(request, MAX_MANIFEST)
    manifest = await imager.offload(commit_rules.check_manifest, blob, t.image)
    async with imager.commit_lock(t.transfer_id):
        version = await commit_rules.still_open(imager.rt.eventlog, t)
        absent = await imager.offload(imager.store.missing, manifest.chunk_ids)
        if absent:
            raise E.IMAGE_INCOMPLETE(image=t.image, missing=len(absent))
        async with imager.rt.pool.connection() as conn:
            foreign = await commit_rules.unvouched(conn, t.transfer_id, manifest.chunk_ids)
        if foreign:
            raise E.CHUNK_NOT_VOUCHED(image=t.image, count=len(foreign), chunk=foreign[0])
        captured = commit_rules.captured(t, manifest, manifest_id(blob), imager.received.get(t.transfer_id, 0))
        result = await _store_and_append(imager, t, captured, blob, version)
    await imager.rt.projections["stored_images"].wait_for(result.position)
    await imager.rt.projections["transfers"].wait_for(result.position)
    imager.received.pop(t.transfer_id, None)
    await _end(imager, t)
    return {"image": t.image, "manifest": captured.manifest, "stored_bytes": captured.stored_bytes,
            "position": result.position}  # fmt: skip


async def _store_and_append(
    imager: Imager, t: Transfer, captured: ImageCaptured, blob: bytes, version: int
) -> AppendResult:
    """Manifest and chunks durable, then the name moves. Only a commit the log refused (another
    commit of this transfer won: a DpmError, raised before or instead of our append) removes a
    manifest it added, and only one no ImageCaptured names. A cancellation, a lost connection or
    anything else leaves it: our ImageCaptured may be in the log, and the garbage collector removes
    an orphan after its grace period anyway."""
    mid = captured.manifest
    new = not (imager.store.manifests / mid).exists()
    await imager.offload(imager.store.put_manifest, mid, blob)
    await imager.offload(imager.store.sync)  # chunks and manifest durable before the name moves
    try:
        for _attempt in range(5):
            try:
                return await _append(imager, t, captured, expected=version)
            except StreamConflict:  # another replica wrote to the image: decide again on the log
                version = await commit_rules.still_open(imager.rt.eventlog, t)
        raise E.TRANSFER_COMMITTED(transfer=str(t.transfer_id), image=t.image, state="contended")
    except DpmError:
        if new:
            await _drop_unreferenced(imager, t, mid)
        raise


async def _drop_unreferenced(imager: Imager, t: Transfer, mid: str) -> None:
    """Delete a manifest this commit stored in vain, unless the log (this image's stream) or the
    read model, caught up with the log, shows an ImageCaptured naming it; in doubt, keep it."""
    rt = imager.rt
    history = await rt.eventlog.read_stream(stream_id(subjects.IMAGE, t.image_id))
    if any(isinstance(r.event, ImageCaptured) and r.event.manifest == mid for r in history):
        return
    if not await rt.projections["stored_images"].wait_for(await rt.eventlog.head(), timeout=3):
        return
    if mid not in await _live_manifests(imager):
        await imager.offload(imager.store.delete_manifest, mid)


async def _live_manifests(imager: Imager) -> list[str]:
    async with imager.rt.pool.connection() as conn:
        return await live_manifests(conn)


async def _vouch(imager: Imager, t: Transfer, chunks: Any) -> None:
    async with imager.rt.pool.connection() as conn:
        await commit_rules.vouch(conn, t.transfer_id, chunks)


async def _end(imager: Imager, t: Transfer) -> None:
    """A backup ended (committed or aborted): its vouchers and cached state go."""
    async with imager.rt.pool.connection() as conn:
        await commit_rules.forget(conn, t.transfer_id)
    imager.forget(t.transfer_id)
    imager.progress.done(t.transfer_id)


class AbortIn(BaseModel):
    reason: Annotated[str, Field(max_length=1000)] = "aborted by the client"


@router.post("/{transfer_id}/abort")
async def abort(transfer_id: UUID, body: AbortIn, request: Request) -> dict[str, Any]:
    """A backup gave up: its lock on the name goes now, not at the token's expiry."""
    imager, t = await _authorize(request, transfer_id, "backup")
    event = TransferAborted(transfer_id=t.transfer_id, image_id=t.image_id, image=t.image, reason=body.reason)
    async with imager.commit_lock(t.transfer_id):  # never beside a commit of the same transfer
        await commit_rules.still_open(imager.rt.eventlog, t)
        result = await _append(imager, t, event)
    imager.received.pop(t.transfer_id, None)
    await _end(imager, t)
    return {"position": result.position}


async def _manifest_of(imager: Imager, t: Transfer) -> str:
    if (mid := imager.pinned.get(t.transfer_id)) is not None:
        return mid
    async with imager.rt.pool.connection() as conn:
        mid = await current_manifest(conn, t.image_id)
    if mid is None:
        raise E.IMAGE_NOT_FOUND(image=t.image)
    imager.pinned[t.transfer_id] = mid
    return mid


@router.get("/{transfer_id}/manifest")
async def get_manifest(transfer_id: UUID, request: Request) -> Response:
    imager, t = await _authorize(request, transfer_id, "restore")
    mid = await _manifest_of(imager, t)
    manifest = await imager.offload(imager.manifest, mid)
    imager.progress.planned(t.transfer_id, manifest.captured_bytes)
    blob = await imager.offload(imager.store.get_manifest, mid)
    return Response(blob, media_type="application/zstd", headers={"Dpm-Manifest": mid})


@router.get("/{transfer_id}/chunks/{chunk}")
async def get_chunk(transfer_id: UUID, chunk: str, request: Request) -> Response:
    imager, t = await _authorize(request, transfer_id, "restore")
    manifest = await imager.offload(imager.manifest, await _manifest_of(imager, t))
    if chunk not in manifest.chunk_ids:  # a restore token reads its own image, nothing else
        raise E.IMAGE_INVALID(reason=f"chunk {chunk[:16]}... is not part of image {t.image}")
    try:
        blob = await imager.offload(imager.store.get, chunk)
    except KeyError:
        raise E.CHUNK_CORRUPT(chunk=chunk, image=t.image, reason="missing from the store") from None
    await imager.progress.moved(t, len(blob))
    return Response(blob, media_type="application/zstd")


@router.post("/{transfer_id}/chunks/fetch")
async def get_chunks(transfer_id: UUID, body: IdsIn, request: Request) -> Response:
    """Many blobs in one answer (records as for uploads), in the order asked, for a restore."""
    imager, t = await _authorize(request, transfer_id, "restore")
    if len(body.ids) > MAX_FETCH:
        raise E.INVALID_REQUEST(reason=f"at most {MAX_FETCH} chunks per fetch")
    manifest = await imager.offload(imager.manifest, await _manifest_of(imager, t))
    foreign = next((c for c in body.ids if c not in manifest.chunk_ids), None)
    if foreign is not None:
        raise E.IMAGE_INVALID(reason=f"chunk {foreign[:16]}... is not part of image {t.image}")
    try:
        blobs = await imager.offload(imager.store.get_many, body.ids)
    except KeyError as exc:
        raise E.CHUNK_CORRUPT(chunk=str(exc.args[0]), image=t.image, reason="missing from the store") from None
    out = pack_records(zip(body.ids, blobs, strict=True))
    await imager.progress.moved(t, len(out))
    return Response(out, media_type="application/octet-stream")


@router.post("/{transfer_id}/verify")
async def verify(transfer_id: UUID, request: Request) -> dict[str, Any]:
    imager, t = await _authorize(request, transfer_id, "verify")
    mid = await _manifest_of(imager, t)
    manifest = await imager.offload(imager.manifest, mid)
    bad = await imager.offload(gc.verify, imager.store, manifest)
    event = ImageVerified(
        image_id=t.image_id, image=t.image, manifest=mid, chunk_count=len(manifest.chunk_ids), corrupt=tuple(bad)
    )
    await _append(imager, t, event)
    return {"image": t.image, "manifest": mid, "chunks": len(manifest.chunk_ids), "corrupt": bad, "ok": not bad}


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not (length.isascii() and length.isdigit()) or len(length) > 19 or int(length) > limit):
        raise E.INVALID_REQUEST(reason=f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise E.INVALID_REQUEST(reason=f"body larger than {limit} bytes")
        chunks.append(part)
    return b"".join(chunks)


async def _append(imager: Imager, t: Transfer, event: Event, *, expected: int | None = ANY_VERSION) -> AppendResult:
    actor = f"deploy:{t.machine_id}" if t.machine_id else "imager"
    stream = stream_id(subjects.IMAGE, t.image_id)
    return await imager.rt.eventlog.append(stream, expected, [NewEvent(event, Metadata.new(actor=actor))])
