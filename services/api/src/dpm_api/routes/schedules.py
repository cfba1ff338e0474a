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


@router.post("/schedules", status_code=201)
async def create_schedule(body: ScheduleIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn, conn.transaction():
        scenario_id = (await scenarios.find(conn, body.scenario))[0] if body.scenario else None
        machine_ids = await resolve_machines(conn, RunIn(machines=body.machines)) if body.machines else []
        saved = ScheduleSaved(
            schedule_id=uuid.uuid4(),
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
        result = await schedules.save(rt.eventlog, conn, saved, actor=actor)
    await rt.projections["schedules"].wait_for(result.position, timeout=5)
    return saved.model_dump(mode="json")


@router.delete("/schedules/{schedule_id}", status_code=202)
async def delete_schedule(schedule_id: uuid.UUID, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn, conn.transaction():
        result = await schedules.delete(rt.eventlog, conn, schedule_id, actor=actor)
    await rt.projections["schedules"].wait_for(result.position, timeout=5)
    return {"deleted": str(schedule_id)}
