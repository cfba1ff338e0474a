"""The machines' update history over HTTP (issue 14): per machine, across machines with filters,
and as CSV. Installer output (up to 64 KiB a report) comes only when asked for (``?output=true``)
and never in the CSV. A machine's auto-update time (when high-urgency packages come due) is set here
too; notify-now is ``POST /updates/notify`` (routes/packages.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from dpm_api import updates
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_api.requestmeta import command_metadata
from dpm_api.routes.images import machine_facts
from dpm_api.updates import HistoryFilter, Result
from dpm_packages.auto_time import zone
from dpm_runtime.eventlog import ANY_VERSION, Conn
from dpm_schemas import NewEvent, subjects
from dpm_schemas.events import AutoUpdateTimeSet
from dpm_schemas.ids import stream_id

router = APIRouter(tags=["updates"])

Limit = Annotated[int, Query(ge=1, le=10_000, description="at most this many reports, newest first")]


class UpdateOut(BaseModel):
    """One package's outcome on one machine, as its agent reported it."""

    model_config = ConfigDict(frozen=True)

    machine_id: uuid.UUID
    machine: str | None  # None once the machine is deleted
    execution_id: uuid.UUID
    package_id: str
    revision: int
    ok: bool
    code: str | None
    exit_code: int | None
    message: str
    output_tail: str | None = None  # only with ?output=true
    reboot_required: bool
    seconds: float
    reported_at: datetime
    position: int


class MachineUpdatesOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    machine: str
    machine_id: uuid.UUID
    keep: int  # reports kept per machine (DPM_API_UPDATE_HISTORY_KEEP); older ones are dropped
    updates: list[UpdateOut]


@router.get("/machines/{machine}/updates", response_model=MachineUpdatesOut)
async def machine_updates(
    machine: str, request: Request, rt: RuntimeDep, _who: ViewerDep, limit: Limit = 200, output: bool = False
) -> MachineUpdatesOut:
    """The machine's update history, newest first (DPM-E102 for a machine the api does not know)."""
    async with rt.pool.connection() as conn:
        facts, machine_id = await machine_facts(conn, machine)
        rows = await updates.history(conn, HistoryFilter(machine_id=machine_id, limit=limit), output=output)
    return MachineUpdatesOut(
        machine=facts.name,
        machine_id=machine_id,
        keep=request.app.state.update_history_keep,
        updates=[UpdateOut(**r) for r in rows],
    )


@router.get("/updates/history", response_model=list[UpdateOut])
async def update_history(
    rt: RuntimeDep,
    _who: ViewerDep,
    machine: Annotated[str | None, Query(description="machine name or id")] = None,
    package: Annotated[str | None, Query(description="package id")] = None,
    result: Result | None = None,
    limit: Limit = 200,
    output: bool = False,
) -> list[UpdateOut]:
    """Every machine's update history, newest first, by machine, package and result."""
    async with rt.pool.connection() as conn:
        f = await _filter(conn, machine, package, result, limit)
        rows = await updates.history(conn, f, output=output)
    return [UpdateOut(**r) for r in rows]


@router.get("/updates/history/export", response_class=PlainTextResponse)
async def export_update_history(
    rt: RuntimeDep,
    _who: ViewerDep,
    machine: str | None = None,
    package: str | None = None,
    result: Result | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> PlainTextResponse:
    """The same history as CSV (no installer output), safe to open in a spreadsheet."""
    async with rt.pool.connection() as conn:
        rows = await updates.history(conn, await _filter(conn, machine, package, result, limit))
    return PlainTextResponse(updates.render_csv(rows), media_type="text/csv")


async def _filter(
    conn: Conn, machine: str | None, package: str | None, result: Result | None, limit: int
) -> HistoryFilter:
    """The filter of a request; a machine named is resolved first (unknown: DPM-E102)."""
    machine_id = (await machine_facts(conn, machine))[1] if machine else None
    return HistoryFilter(machine_id=machine_id, package=package or None, result=result, limit=limit)


class AutoUpdateTimeIn(BaseModel):
    at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM, 24 h")] | None
    timezone: Annotated[str, Field(max_length=64)] = "UTC"


@router.put("/machines/{machine}/auto-update", status_code=202)
async def set_auto_update_time(
    machine: str, body: AutoUpdateTimeIn, rt: RuntimeDep, actor: ActorDep
) -> dict[str, str | int | None]:
    """The machine's auto-update time in its zone (``at`` null: none): high-urgency packages
    registered before it are pushed then, or when it next comes online (DPM-E285 for a bad zone)."""
    zone(body.timezone)
    async with rt.pool.connection() as conn, conn.transaction():
        _facts, machine_id = await machine_facts(conn, machine)
        event = AutoUpdateTimeSet(machine_id=machine_id, at=body.at, timezone=body.timezone)
        done = await rt.eventlog.append(
            stream_id(subjects.MACHINE, machine_id), ANY_VERSION, [NewEvent(event, command_metadata(actor))], conn=conn
        )
    return {"machine_id": str(machine_id), "at": body.at, "timezone": body.timezone, "position": done.position}
