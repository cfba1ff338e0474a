"""Administration: projection positions, rebuilds, and the quarantine of events a projection could
not apply (listed, retried or skipped by an admin; error texts are shown to admins only). The
quarantine is one table for every service, so the api lists and skips entries of any service's
projections; a retry of another service's runs in that service (it takes the request within its
quarantine poll, 15 s), because only it has the projection's code."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dpm_api.deps import AdminDep, RuntimeDep, ViewerDep
from dpm_runtime import quarantine
from dpm_runtime.projection import ProjectionRunner, rebuild, retry_quarantined, skip_quarantined
from dpm_runtime.service import Runtime
from dpm_schemas import E

router = APIRouter(prefix="/admin", tags=["admin"])


class ProjectionOut(BaseModel):
    name: str
    position: int
    quarantined: int = 0


class RebuildOut(BaseModel):
    name: str
    events: int
    position: int
    seconds: float
    events_per_second: float
    quarantined: int = 0


class QuarantineOut(BaseModel):
    projection: str
    position: int
    event_id: uuid.UUID | None
    type: str
    error: str
    status: Literal["quarantined", "retry", "skipped"]
    attempts: int
    recorded_at: datetime


@router.get("/projections", response_model=list[ProjectionOut])
async def list_projections(rt: RuntimeDep, _who: ViewerDep) -> list[ProjectionOut]:
    """Projections of this service and the position each has reached."""
    return [
        ProjectionOut(name=name, position=runner.position, quarantined=runner.quarantined)
        for name, runner in sorted(rt.projections.items())
    ]


def _runner(rt: Runtime, name: str) -> ProjectionRunner:
    runner = rt.projections.get(name)
    if runner is None:
        raise E.UNKNOWN_PROJECTION(name=name, known=", ".join(sorted(rt.projections)))
    return runner


@router.post("/projections/{name}/rebuild", response_model=RebuildOut)
async def rebuild_projection(name: str, rt: RuntimeDep, _admin: AdminDep) -> RebuildOut:
    """Replay the log from position 0 into fresh tables and swap them in."""
    runner = _runner(rt, name)
    result = await rebuild(runner.projection, pool=rt.pool, eventlog=rt.eventlog)
    await runner.refresh_quarantined()
    return RebuildOut(
        name=result.name,
        events=result.events,
        position=result.position,
        seconds=result.seconds,
        events_per_second=result.rate,
        quarantined=result.quarantined,
    )


@router.get("/quarantine", response_model=list[QuarantineOut])
async def list_quarantine(rt: RuntimeDep, _admin: AdminDep, projection: str | None = None) -> list[QuarantineOut]:
    """Events any service's projections set aside, with the error (admins only: it may name data)."""
    async with rt.pool.connection() as conn:
        found = await quarantine.entries(conn, projection)
    return [QuarantineOut(**asdict(e)) for e in found]


@router.post(
    "/quarantine/{projection}/{position}/retry",
    status_code=204,
    responses={202: {"model": QuarantineOut, "description": "another service's entry, marked for it to retry"}},
)
async def retry_quarantine(projection: str, position: int, rt: RuntimeDep, _admin: AdminDep) -> Response:
    """Apply the event again. The api's own projections retry now: 204 when it applies and leaves the
    quarantine, else DPM-E171 and it stays. Another service's entry is marked ``retry`` (202); that
    service applies it within its quarantine poll."""
    runner = rt.projections.get(projection)
    if runner is None:
        async with rt.pool.connection() as conn, conn.transaction():
            marked = QuarantineOut(**asdict(await quarantine.request_retry(conn, projection, position)))
        return JSONResponse(marked.model_dump(mode="json"), status_code=202)
    try:
        await retry_quarantined(runner.projection, pool=rt.pool, position=position)
    finally:
        await runner.refresh_quarantined()
    return Response(status_code=204)


@router.post("/quarantine/{projection}/{position}/skip", response_model=QuarantineOut)
async def skip_quarantine(projection: str, position: int, rt: RuntimeDep, _admin: AdminDep) -> QuarantineOut:
    """Leave the read model without the event (the entry stays, marked skipped, and no longer counts)."""
    await skip_quarantined(projection, pool=rt.pool, position=position)
    runner = rt.projections.get(projection)
    if runner is not None:
        await runner.refresh_quarantined()
    async with rt.pool.connection() as conn:
        return QuarantineOut(**asdict(await quarantine.entry(conn, projection, position)))
