"""Deploy logs over REST: the deploy environment uploads its bundle after its step
(``PUT /deploy/v1/logs``, its deploy token, also for a short grace once the step ended), operators
read it (``GET /executions/{execution_id}/logs``, viewer). ADR 0015; storage in ``deploy_logs``."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from dpm_api import deploy_logs
from dpm_api.deploy_auth import deploy_log_caller
from dpm_api.deps import RuntimeDep, ViewerDep, now
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.http import max_body
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.events import DeployLogUploaded
from dpm_schemas.ids import stream_id

router = APIRouter(tags=["deploy"])
# The body limit is this route's own: the runtime's middleware would answer a generic DPM-E409, the
# route answers DPM-E442 with the bundle's limit itself (a declared size at once, a streamed one as
# soon as it passes it).
WIRE_LIMIT = 1 << 30
SAFE = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "no-store"}  # fmt: skip


@router.put("/deploy/v1/logs", status_code=201)
@max_body(WIRE_LIMIT)
async def upload_logs(execution_id: uuid.UUID, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """The deploy environment's logs after its step: kept as its machine's latest (the previous
    run's are replaced), with a DeployLogUploaded fact in the execution's step stream."""
    machine_id = await deploy_log_caller(request, rt, execution_id)
    data = await _bounded_body(request)
    parts = deploy_logs.parse_bundle(data)
    log = deploy_logs.StoredLog(machine_id, execution_id, now(request), len(data), hashlib.sha256(data).hexdigest(),
                                sorted(parts), data)  # fmt: skip
    fact = DeployLogUploaded(execution_id=execution_id, machine_id=machine_id, size=log.size, sha256=log.sha256)
    async with rt.pool.connection() as conn, conn.transaction():
        await deploy_logs.store(conn, log)
        await rt.eventlog.append(
            stream_id(subjects.STEP, execution_id),
            ANY_VERSION,
            [NewEvent(fact, command_metadata(f"deploy:{machine_id}"))],
            conn=conn,
        )
    return {"execution_id": str(execution_id), "size": log.size, "sha256": log.sha256, "parts": log.parts}


async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > deploy_logs.LIMIT:
        raise E.DEPLOY_LOG_TOO_LARGE(size=int(declared), what="declared", limit=deploy_logs.LIMIT)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > deploy_logs.LIMIT:
            raise E.DEPLOY_LOG_TOO_LARGE(
                size=f"more than {deploy_logs.LIMIT}", what="streamed", limit=deploy_logs.LIMIT
            )
    return bytes(body)


Part = Literal["console", "dmesg", "client"]


@router.get("/executions/{execution_id}/logs", response_class=Response)
async def read_logs(
    execution_id: uuid.UUID,
    rt: RuntimeDep,
    _who: ViewerDep,
    part: Annotated[Part | None, Query(description="one log as text; without it the whole bundle")] = None,
) -> Response:
    """The deploy logs of an execution (its machine's latest run only): the bundle as uploaded
    (tar.gz, an attachment), or one part as UTF-8 text with its control characters made visible.
    Always with nosniff and a CSP that runs nothing: the content comes from a machine."""
    async with rt.pool.connection() as conn:
        log = await deploy_logs.fetch(conn, execution_id)
    if part is None:
        disposition = f'attachment; filename="deploy-logs-{execution_id}.tar.gz"'
        return Response(log.bundle, media_type="application/gzip", headers={**SAFE, "Content-Disposition": disposition})
    parts = deploy_logs.parse_bundle(log.bundle)
    if part not in parts:
        raise E.DEPLOY_LOG_PART_MISSING(execution_id=execution_id, part=part, parts=", ".join(sorted(parts)))
    return Response(deploy_logs.safe_text(parts[part]), media_type="text/plain; charset=utf-8", headers=SAFE)
