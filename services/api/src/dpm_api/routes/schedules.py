"""Schedules over HTTP: one-shot or cron, for scenario runs and power on/off."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dpm_api import scenarios, schedules
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_api.routes.scenarios import RunIn, resolve_machines
from dpm_runtime.eventlog import Conn
from dpm_schemas.events import ScheduleSaved
from dpm_schemas.events.schedules import ScheduleAction
from dpm_schemas.text import Label, Name

router = APIRouter(tags=["schedules"])


class ScheduleIn(BaseModel):
    name: Name
    action: ScheduleAction
    scenario: Name | None = Field(default=None, description="for runs: scenario name or id")
    machines: list[Annotated[Name, Field(max_length=253)]] = Field(
        default_factory=list, max_length=100_000, description="machine names or ids"
    )
    group: Name | None = None
    at: datetime | None = Field(default=None, description="one-shot, a future time")
    cron: Label | None = Field(default=None, description="recurring, five fields, e.g. '0 22 * * 1-5'")
    timezone: Label = "UTC"
    enabled: bool = True


@router.get("/schedules")
async def list_schedules(rt: RuntimeDep, _who: ViewerDep) -> list[dict[str, Any]]:
    async with rt.pool.connection() as conn:
        rows = await (await conn.execute("SELECT definition FROM api.schedules ORDER BY name")).fetchall()
    return [r[0] for r in rows]


class EditIn(ScheduleIn):
    """``PUT /schedules/{id}``: a whole new definition, as ``POST /schedules`` takes it."""

    version: int | None = Field(
        default=None, ge=1, description="the version the edit is based on (GET /schedules/{id}); DPM-E184 if newer"
    )


class EnabledIn(BaseModel):
    """``PATCH /schedules/{id}``: pause (false) or resume (true)."""

    enabled: bool
    version: int | None = Field(default=None, ge=1, description="as for PUT")


async def _definition(conn: Conn, body: ScheduleIn, schedule_id: uuid.UUID) -> ScheduleSaved:
    """The event of a body: the scenario and machines resolved to ids now."""
    scenario_id = (await scenarios.find(conn, body.scenario))[0] if body.scenario else None
    machine_ids = await resolve_machines(conn, RunIn(machines=body.machines)) if body.machines else []
    return ScheduleSaved(
        schedule_id=schedule_id,
        name=body.name,
        action=body.action,
        scenario_id=scenario_id,
        machine_ids=tuple(machine_ids),
        group=body.group,
        at=body.at,
        cron=body.cron,
        timezone=body.timezone,
        enabled=body.enabled,
    )


def _versioned(s: ScheduleSaved, version: int) -> dict[str, Any]:
    return {**s.model_dump(mode="json"), "version": version}


@router.post("/schedules", status_code=201)
async def create_schedule(body: ScheduleIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn, conn.transaction():
        saved = await _definition(conn, body, uuid.uuid4())
        result = await schedules.save(rt.eventlog, conn, saved, actor=actor)
    await rt.projections["schedules"].wait_for(result.position, timeout=5)
    return saved.model_dump(mode="json")


@router.get("/schedules/{schedule_id}")
async def get_schedule(schedule_id: uuid.UUID, rt: RuntimeDep, _who: ViewerDep) -> dict[str, Any]:
    """The definition with its version, which an edit can name to be refused if it is stale."""
    async with rt.pool.connection() as conn:
        saved, version = await schedules.current(rt.eventlog, conn, schedule_id)
    return _versioned(saved, version)


@router.put("/schedules/{schedule_id}")
async def replace_schedule(schedule_id: uuid.UUID, body: EditIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """Replace the definition (same id); the scheduler fires it by the new one from now on."""
    async with rt.pool.connection() as conn, conn.transaction():
        await schedules.current(rt.eventlog, conn, schedule_id)  # DPM-E183 before resolving the body
        saved = await _definition(conn, body, schedule_id)
        result, saved = await schedules.replace(rt.eventlog, conn, saved, expected=body.version, actor=actor)
    await rt.projections["schedules"].wait_for(result.position, timeout=5)
    return _versioned(saved, result.stream_version)


@router.patch("/schedules/{schedule_id}")
async def pause_schedule(schedule_id: uuid.UUID, body: EnabledIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """Pause (``enabled: false``: it does not fire) or resume (it fires at its next time)."""
    async with rt.pool.connection() as conn, conn.transaction():
        result, saved, version = await schedules.set_enabled(
            rt.eventlog, conn, schedule_id, body.enabled, expected=body.version, actor=actor
        )
    if result is not None:
        await rt.projections["schedules"].wait_for(result.position, timeout=5)
    return _versioned(saved, version)


@router.delete("/schedules/{schedule_id}", status_code=202)
async def delete_schedule(schedule_id: uuid.UUID, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn, conn.transaction():
        result = await schedules.delete(rt.eventlog, conn, schedule_id, actor=actor)
    await rt.projections["schedules"].wait_for(result.position, timeout=5)
    return {"deleted": str(schedule_id)}
