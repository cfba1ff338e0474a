"""Restore and verify over HTTP: the manifest, then chunks (only those it names)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from dpm_imager import chunks
from dpm_imager.routes.access import authorized
from dpm_imager.routes.backup import IdsIn

router = APIRouter()


class VerifyOut(BaseModel):
    image: str
    manifest: str
    chunks: int
    corrupt: list[str]
    ok: bool


@router.get("/{transfer_id}/manifest")
async def get_manifest(transfer_id: UUID, request: Request) -> Response:
    imager, t = await authorized(request, transfer_id, "restore")
    mid, blob = await chunks.manifest(imager, t)
    return Response(blob, media_type="application/zstd", headers={"Dpm-Manifest": mid})


@router.get("/{transfer_id}/chunks/{chunk}")
async def get_chunk(transfer_id: UUID, chunk: str, request: Request) -> Response:
    imager, t = await authorized(request, transfer_id, "restore")
    return Response(await chunks.get_one(imager, t, chunk), media_type="application/zstd")


@router.post("/{transfer_id}/chunks/fetch")
async def get_chunks(transfer_id: UUID, body: IdsIn, request: Request) -> Response:
    """Many blobs in one answer (records as for uploads), in the order asked, for a restore."""
    imager, t = await authorized(request, transfer_id, "restore")
    return Response(await chunks.get_packed(imager, t, body.ids), media_type="application/octet-stream")


@router.post("/{transfer_id}/verify")
async def verify(transfer_id: UUID, request: Request) -> VerifyOut:
    imager, t = await authorized(request, transfer_id, "verify")
    v = await chunks.verify(imager, t)
    return VerifyOut(image=v.image, manifest=v.manifest, chunks=v.chunks, corrupt=v.corrupt, ok=not v.corrupt)
