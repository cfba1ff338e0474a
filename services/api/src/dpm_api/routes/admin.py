"""Administration: projection positions, rebuilds, and the quarantine of events a projection could
not apply (listed, retried or skipped by an admin; error texts are shown to admins only).

Projections are named "<service>.<projection>" ("api.machines", "pxe.directory"); the api's own may
still be named short ("machines"). The quarantine and the projection registry are tables shared by
every service, so the api lists and skips entries of any service's projections; a retry or a rebuild
of another service's projection runs in that service, because only it has the projection's code: the
api records the request (202) and that service carries it out -- a retry within its quarantine poll
(15 s), a rebuild as soon as it is woken (``GET /admin/rebuilds/{id}`` follows it)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dpm_api.deps import AdminDep, RuntimeDep, ViewerDep
from dpm_runtime import quarantine, rebuilds, registry
from dpm_runtime.projection import RebuildResult, rebuild, retry_quarantined, skip_quarantined
from dpm_runtime.service import Runtime
from dpm_schemas import E

router = APIRouter(prefix="/admin", tags=["admin"])


class ProjectionOut(BaseModel):
    name: str  # "<service>.<projection>"
    position: int
    quarantined: int = 0
    service: str | None = None


class RebuildOut(BaseModel):
    name: str
    events: int
    position: int
    seconds: float
    events_per_second: float
    quarantined: int = 0


class RebuildRequestOut(BaseModel):
    """A rebuild the api asked of the service that owns the projection; figures once ``done``."""

    id: uuid.UUID
    projection: str
    service: str
    status: Literal["pending", "running", "done", "failed"]
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events: int | None
    position: int | None
    seconds: float | None
    quarantined: int | None
    error: str | None


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
async def list_projections(
    rt: RuntimeDep, _who: ViewerDep, every: Annotated[bool, Query(alias="all")] = False
) -> list[ProjectionOut]:
    """The api's projections and the position each has reached; with ``all``, every service's (as
    registered in ``dpm_projections`` and checkpointed)."""
    if every:
        async with rt.pool.connection() as conn:
            return [ProjectionOut(**asdict(p)) for p in await registry.listing(conn)]
    return [
        ProjectionOut(
            name=runner.projection.name, position=runner.position, quarantined=runner.quarantined, service=rt.name
        )
        for _, runner in sorted(rt.projections.items())
    ]


def _full_name(rt: Runtime, name: str) -> str:
    """The full name of ``name``: the api's own projections may be named short."""
    runner = rt.runner(name)
    return runner.projection.name if runner is not None else name


@router.post(
    "/projections/{name}/rebuild",
    response_model=RebuildOut,
    responses={202: {"model": RebuildRequestOut, "description": "another service's projection: asked of it"}},
)
async def rebuild_projection(name: str, rt: RuntimeDep, admin: AdminDep) -> RebuildOut | JSONResponse:
    """Replay the log from position 0 into fresh tables and swap them in: now for the api's own
    projections (200, the figures), else by the service that owns it (202, the request to follow)."""
    runner = rt.runner(name)
    if runner is not None:
        result = await rebuild(runner.projection, pool=rt.pool, eventlog=rt.eventlog)
        await runner.refresh_quarantined()
        return _rebuilt(result)
    async with rt.pool.connection() as conn:
        found = await registry.lookup(conn, name)
        if found is None or found.service == rt.name:
            known = sorted({p.name for p in await registry.listing(conn)} | {_full_name(rt, n) for n in rt.projections})
            raise E.UNKNOWN_PROJECTION(name=name, known=", ".join(known))
        asked = RebuildRequestOut(**asdict(await rebuilds.ask(conn, found.name, found.service, admin)))
    headers = {"Location": f"/admin/rebuilds/{asked.id}"}
    return JSONResponse(asked.model_dump(mode="json"), status_code=202, headers=headers)


def _rebuilt(result: RebuildResult) -> RebuildOut:
    return RebuildOut(
        name=result.name,
        events=result.events,
        position=result.position,
        seconds=result.seconds,
        events_per_second=result.rate,
        quarantined=result.quarantined,
    )


@router.get("/rebuilds/{request_id}", response_model=RebuildRequestOut)
async def get_rebuild(request_id: uuid.UUID, rt: RuntimeDep, _admin: AdminDep) -> RebuildRequestOut:
    """Where a rebuild asked of another service is: pending, running, done (with figures) or failed."""
    async with rt.pool.connection() as conn:
        return RebuildRequestOut(**asdict(await rebuilds.get(conn, request_id)))


@router.get("/quarantine", response_model=list[QuarantineOut])
async def list_quarantine(rt: RuntimeDep, _admin: AdminDep, projection: str | None = None) -> list[QuarantineOut]:
    """Events any service's projections set aside, with the error (admins only: it may name data)."""
    async with rt.pool.connection() as conn:
        found = await quarantine.entries(conn, None if projection is None else _full_name(rt, projection))
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
    runner = rt.runner(projection)
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
    full = _full_name(rt, projection)
    await skip_quarantined(full, pool=rt.pool, position=position)
    runner = rt.runner(projection)
    if runner is not None:
        await runner.refresh_quarantined()
    async with rt.pool.connection() as conn:
        return QuarantineOut(**asdict(await quarantine.entry(conn, full, position)))
