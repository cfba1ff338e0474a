"""What every data-plane route does first: find the imager, authorise the call's token, read a
bounded body."""

from __future__ import annotations

from uuid import UUID

from fastapi import Request

from dpm_imager import transfers
from dpm_imager.adapters.dataplane import Imager
from dpm_imager.domain.transfers import Transfer
from dpm_runtime.http import required_bearer
from dpm_schemas import E


def imager_of(request: Request) -> Imager:
    imager: Imager | None = getattr(request.app.state, "imager", None)
    if imager is None:
        raise E.NOT_READY(service="imager", reason="still connecting to PostgreSQL and NATS")
    return imager


async def authorized(request: Request, transfer_id: UUID, direction: str) -> tuple[Imager, Transfer]:
    """The imager and the transfer of this call's bearer token (DPM-E401 without one)."""
    imager = imager_of(request)
    token = required_bearer(request.headers)
    return imager, await transfers.authorize(imager, token, transfer_id, direction)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (DPM-E100) past ``limit`` bytes, declared or streamed."""
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
