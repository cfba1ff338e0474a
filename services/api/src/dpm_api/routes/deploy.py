"""The deploy environment's side of the step protocol: a booted deploy environment reports its step
with the short-lived token pxe put on its kernel command line (only the token's SHA-256 is stored),
and the api appends StepReported on its behalf."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from dpm_api.deps import RuntimeDep
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.service import Runtime
from dpm_schemas import E, Metadata, NewEvent, subjects
from dpm_schemas.events import StepReported
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.ids import stream_id

router = APIRouter(prefix="/deploy/v1", tags=["deploy"])


class StepIn(BaseModel):
    execution_id: uuid.UUID
    status: StepStatus
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    code: Annotated[str, Field(max_length=20, pattern=r"^[A-Z0-9-]+$")] | None = None
    message: Annotated[str, Field(max_length=1000)] = ""


@router.post("/steps", status_code=202)
async def report_step(body: StepIn, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise E.UNAUTHENTICATED()
    digest = hashlib.sha256(token.encode()).hexdigest()
    row = await _token(rt, digest, body.execution_id)
    if row is None:  # the read models may be a moment behind a deploy environment that reports at once
        async with rt.pool.connection() as conn:
            head = await (await conn.execute("SELECT coalesce(max(position), 0) FROM events")).fetchone()
        for name in ("deploy_tokens", "executions"):
            await rt.projections[name].wait_for(int(head[0]) if head else 0, timeout=3)
        row = await _token(rt, digest, body.execution_id)
    if row is None:  # unknown, expired, or another execution's token: the same answer for all
        raise E.UNAUTHENTICATED()
    machine_id, step = row
    report = StepReported(
        execution_id=body.execution_id,
        step=step,
        status=body.status,
        percent=body.percent,
        code=body.code,
        message=body.message,
    )
    result = await rt.eventlog.append(
        stream_id(subjects.STEP, body.execution_id),
        ANY_VERSION,
        [NewEvent(report, Metadata.new(actor=f"deploy:{machine_id}"))],
    )
    return {"position": result.position}


async def _token(rt: Runtime, digest: str, execution_id: uuid.UUID) -> tuple[Any, ...] | None:
    async with rt.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT t.machine_id, x.kind FROM api.deploy_tokens t JOIN api.executions x"
                " ON x.execution_id = t.execution_id WHERE t.token_sha256 = %s AND t.execution_id = %s"
                " AND t.expires_at > now()",
                (digest, execution_id),
            )
        ).fetchone()
    return tuple(row) if row else None
