"""Backup over HTTP: ``start`` -> ``missing`` -> ``PUT`` chunks -> ``commit`` (or ``abort``), with
``renew`` as the client's heartbeat between them."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from dpm_imagefmt.chunks import MAX_SIZE
from dpm_imagefmt.store import unpack_records
from dpm_imager import chunks
from dpm_imager import commit as commits
from dpm_imager.domain.manifest import MAX_BYTES, check_chunk_ids
from dpm_imager.routes.access import authorized, read_body
from dpm_runtime.http import max_body
from dpm_schemas import E

router = APIRouter()

MAX_BLOB = MAX_SIZE + 128 * 1024  # zstd of an incompressible 2 MiB chunk is a little larger
MAX_MANIFEST = 256 * 1024 * 1024
MAX_IDS = 4096
MAX_BATCH = 32 * 1024 * 1024  # bytes of chunks per upload request


class StartIn(BaseModel):
    planned_bytes: Annotated[int, Field(ge=0, le=MAX_BYTES)]  # unbounded, x free_factor overflowed


class StartOut(BaseModel):
    free_bytes: int


class IdsIn(BaseModel):
    ids: Annotated[list[str], Field(max_length=MAX_IDS)]


class MissingOut(BaseModel):
    missing: list[str]


class CommitOut(BaseModel):
    image: str
    manifest: str
    stored_bytes: int
    position: int


class AbortIn(BaseModel):
    reason: Annotated[str, Field(max_length=1000)] = "aborted by the client"


class AbortOut(BaseModel):
    position: int


@router.post("/{transfer_id}/start")
async def start(transfer_id: UUID, body: StartIn, request: Request) -> StartOut:
    """Before the first chunk: room for the planned bytes (times the free factor), or DPM-E159."""
    imager, t = await authorized(request, transfer_id, "backup")
    return StartOut(free_bytes=chunks.start(imager, t, body.planned_bytes))


@router.post("/{transfer_id}/missing")
async def missing(transfer_id: UUID, body: IdsIn, request: Request) -> MissingOut:
    imager, t = await authorized(request, transfer_id, "backup")
    return MissingOut(missing=await chunks.missing(imager, t, body.ids))


@router.put("/{transfer_id}/chunks/{chunk}", status_code=204)
@max_body(MAX_BLOB)
async def put_chunk(transfer_id: UUID, chunk: str, request: Request) -> Response:
    imager, t = await authorized(request, transfer_id, "backup")
    check_chunk_ids([chunk])
    await chunks.put(imager, t, [(chunk, await read_body(request, MAX_BLOB))])
    return Response(status_code=204)


@router.post("/{transfer_id}/chunks", status_code=204)
@max_body(MAX_BATCH)
async def put_chunks(transfer_id: UUID, request: Request) -> Response:
    """Many chunks in one body (records: 32-byte id, 4-byte length, blob), each verified before it
    is stored, in parallel; a corrupt one is named and refused, the others are kept."""
    imager, t = await authorized(request, transfer_id, "backup")
    try:
        items = unpack_records(await read_body(request, MAX_BATCH), MAX_BLOB)
    except ValueError as exc:
        raise E.INVALID_REQUEST(reason=str(exc)) from None
    await chunks.put(imager, t, items)
    return Response(status_code=204)


@router.post("/{transfer_id}/commit")
@max_body(MAX_MANIFEST)
async def commit(transfer_id: UUID, request: Request) -> CommitOut:
    """The manifest is checked (off the loop) before anything is stored, and a transfer commits
    once: parallel commits wait for the first, then find it committed (DPM-E118)."""
    imager, t = await authorized(request, transfer_id, "backup")
    done = await commits.commit(imager, t, await read_body(request, MAX_MANIFEST))
    return CommitOut(image=done.image, manifest=done.manifest, stored_bytes=done.stored_bytes, position=done.position)


class RenewOut(BaseModel):
    expires_at: str


@router.post("/{transfer_id}/renew")
async def renew(transfer_id: UUID, request: Request) -> RenewOut:
    """A backup's heartbeat while it reads without sending: a use of its token, which renews its
    lease on the name (transfers.authorize) and does nothing else."""
    _imager, t = await authorized(request, transfer_id, "backup")
    return RenewOut(expires_at=t.expires_at.isoformat())


@router.post("/{transfer_id}/abort")
async def abort(transfer_id: UUID, body: AbortIn, request: Request) -> AbortOut:
    """A backup gave up: its lock on the name goes now, not at the token's expiry."""
    imager, t = await authorized(request, transfer_id, "backup")
    return AbortOut(position=await commits.abort(imager, t, body.reason))
