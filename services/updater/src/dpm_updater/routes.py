"""The updater's data plane for package content. Uploads, in the tus protocol's shape: ``HEAD`` tells
how many bytes of an upload the store holds (``Upload-Offset``), ``PATCH`` appends from there; the
request that completes the content answers with its SHA-256, and every call carries the upload's
bearer token, which only the api hands out (``POST /packages/uploads``). Deliveries: an agent
fetches its install order's content (``GET`` with ``Range``) and reports on its step, with the
order's token, which only the updater's step handler hands out."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

from dpm_runtime.http import max_body, required_bearer
from dpm_schemas import E
from dpm_schemas.agent_protocol import REPORT_PATH, InstallReport
from dpm_updater.downloads import Downloads
from dpm_updater.uploads import Receiver

router = APIRouter(tags=["uploads"])

_NO_STORE = {"Cache-Control": "no-store", "Tus-Resumable": "1.0.0"}
UPLOAD_TYPE = "application/offset+octet-stream"  # tus: raw bytes, never parsed (or held whole) as JSON
NO_LIMIT = 1 << 62  # an upload's size is the one it was opened for, not a body limit
REPORT_LIMIT = 8 << 20  # 64 outcomes with 64 KiB of output each, JSON-escaped
REPORT_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": InstallReport.model_json_schema()}}}
}


def receiver_of(request: Request) -> Receiver:
    receiver: Receiver | None = getattr(request.app.state, "receiver", None)
    if receiver is None:
        raise E.NOT_READY(service="updater", reason="still connecting to PostgreSQL and NATS")
    return receiver


def _offset(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise E.INVALID_REQUEST(reason=f"{name} must be a non-negative integer")
    return int(value)


@router.head("/v1/uploads/{upload_id}")
async def upload_offset(upload_id: UUID, request: Request) -> Response:
    receiver = receiver_of(request)
    u = await receiver.authorize(required_bearer(request.headers), upload_id)
    held = u.size if u.state == "stored" else receiver.store.held(upload_id)
    headers = {**_NO_STORE, "Upload-Offset": str(held), "Upload-Length": str(u.size)}
    if u.stored_sha256:
        headers["Upload-Sha256"] = u.stored_sha256
    return Response(status_code=200, headers=headers)


@router.patch("/v1/uploads/{upload_id}")
@max_body(NO_LIMIT)
async def upload_bytes(
    upload_id: UUID, request: Request, upload_offset: Annotated[str | None, Header()] = None
) -> Response:
    """Append the body at ``Upload-Offset`` (required: where the client believes the store's copy ends)."""
    receiver = receiver_of(request)
    u = await receiver.authorize(
        required_bearer(request.headers), upload_id
    )  # before anything of the request is judged
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != UPLOAD_TYPE:
        raise E.INVALID_REQUEST(reason=f"Content-Type must be {UPLOAD_TYPE}")
    start = _offset(upload_offset, "Upload-Offset")
    if start is None:
        raise E.INVALID_REQUEST(reason="Upload-Offset header required (HEAD the upload to learn it)")
    length = _offset(request.headers.get("content-length"), "Content-Length")
    held = await receiver.receive(u, start, length, request.stream())
    headers = {**_NO_STORE, "Upload-Offset": str(held)}
    if held < u.size:
        return Response(status_code=204, headers=headers)
    sha256 = await receiver.complete(u)
    body = {"upload_id": str(upload_id), "state": "stored", "sha256": sha256, "size": u.size}
    return JSONResponse(body, status_code=200, headers={**headers, "Upload-Sha256": sha256})


# -- deliveries: what an agent's install order lets it fetch and report ---------------------------


class ContentFile(FileResponse):
    """Read and sent a MiB at a time, not Starlette's 64 KiB: each chunk is a thread hop and an ASGI
    message: 1 MiB halves the CPU per GB served (2.3 -> 1.05 s/GB, `python -m bench --only packages --quick`)."""

    chunk_size = 1 << 20


def downloads_of(request: Request) -> Downloads:
    downloads: Downloads | None = getattr(request.app.state, "downloads", None)
    if downloads is None:
        raise E.NOT_READY(service="updater", reason="still connecting to PostgreSQL and NATS")
    return downloads


@router.api_route("/v1/content/{sha256}", methods=["GET", "HEAD"], tags=["deliveries"])
async def content(sha256: str, request: Request) -> ContentFile:
    """One package file of the caller's delivery; ``Range`` resumes a cut download. The token is
    judged before anything of the request: a digest outside the delivery is DPM-E281 as any other."""
    path = await downloads_of(request).content(required_bearer(request.headers), sha256)
    return ContentFile(path, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


@router.post(REPORT_PATH, status_code=202, tags=["deliveries"])
@max_body(REPORT_LIMIT)
async def report(request: Request) -> dict[str, int]:
    """The agent's progress or outcome on its delivery (an ``InstallReport``), read once the token
    is known to belong to a delivery."""
    downloads = downloads_of(request)
    token = required_bearer(request.headers)
    await downloads.authorize(token)
    try:
        body = InstallReport.model_validate_json(await request.body())
    except ValidationError as exc:
        raise E.INVALID_REQUEST(reason=str(exc.errors()[0].get("msg", "not an InstallReport"))[:300]) from None
    return {"position": await downloads.report(token, body)}
