"""Staged rollouts over HTTP: start one (a package to machine groups in order, halting on a failure
rate), list them, follow one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dpm_api import rollouts
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_schemas import E
from dpm_schemas.events.packages import PackageId
from dpm_schemas.text import Name

router = APIRouter(tags=["updates"])


class RolloutIn(BaseModel):
    package: PackageId
    rings: Annotated[list[Name], Field(min_length=1, max_length=20, description="machine groups, canary first")]
    max_failure_rate: Annotated[float, Field(ge=0, le=1, description="a ring failing more halts the rollout")] = 0.0


class RingOut(BaseModel):
    group: str
    machines: int


class RolloutOut(BaseModel):
    rollout_id: uuid.UUID
    package_id: str
    revision: int
    rings: list[RingOut]
    max_failure_rate: float
    ring: int  # the ring under way (-1: not started yet)
    state: str  # starting, running, halted, completed
    message: str
    started_at: datetime
    started_by: str


@router.post("/rollouts", status_code=202, response_model=RolloutOut)
async def start_rollout(body: RolloutIn, rt: RuntimeDep, actor: ActorDep) -> RolloutOut:
    async with rt.pool.connection() as conn, conn.transaction():
        started = await rollouts.start(rt.eventlog, conn, package_id=body.package, rings=body.rings,
                                       max_failure_rate=body.max_failure_rate, actor=actor)  # fmt: skip
    return await _one(rt, started.rollout_id, wait=True)


@router.get("/rollouts", response_model=list[RolloutOut])
async def list_rollouts(rt: RuntimeDep, _who: ViewerDep) -> list[RolloutOut]:
    async with rt.pool.connection() as conn:
        return [RolloutOut.model_validate(r) for r in await rollouts.list_rollouts(conn)]


@router.get("/rollouts/{rollout_id}", response_model=RolloutOut)
async def show_rollout(rollout_id: uuid.UUID, rt: RuntimeDep, _who: ViewerDep) -> RolloutOut:
    return await _one(rt, rollout_id)


async def _one(rt: RuntimeDep, rollout_id: uuid.UUID, *, wait: bool = False) -> RolloutOut:
    if wait:
        await rt.projections["rollouts"].wait_for(await rt.eventlog.head(), timeout=5)
    async with rt.pool.connection() as conn:
        found = await rollouts.list_rollouts(conn, rollout_id)
    if not found:
        raise E.ROLLOUT_NOT_FOUND(rollout=str(rollout_id))
    return RolloutOut.model_validate(found[0])
