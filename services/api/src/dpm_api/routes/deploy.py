"""The deploy environment's side of the step protocol: a booted deploy environment reports its step
with the token pxe put on its kernel command line (only the token's SHA-256 is stored), and the api
appends StepReported on its behalf. The token works only from the client pxe gave it to and only
while its execution's step runs; every call made with it renews it (``deploy_auth``)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from dpm_api import images
from dpm_api.deploy_auth import deploy_caller
from dpm_api.deps import RuntimeDep
from dpm_api.requestmeta import command_metadata
from dpm_api.routes.images import machine_facts, transfer_out
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.service import Runtime
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.events import DiskLayoutReported, ExecutionQueued, StepReported
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.imaging import TransferDirection
from dpm_schemas.events.scenarios import ScenarioSpec
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
    machine_id, step = await deploy_caller(request, rt, body.execution_id)
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
        [NewEvent(report, command_metadata(f"deploy:{machine_id}"))],
    )
    return {"position": result.position}


@router.get("/step")
async def current_step(execution_id: uuid.UUID, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """What the deploy environment is to do: the step of its execution and the scenario's parameters
    (the revision the run pinned), its timeout, which bounds how long the client retries a call, and
    what it does once the step is done (``end``: reboot into the disk, power off, or stay)."""
    machine_id, step = await deploy_caller(request, rt, execution_id)
    spec = await _spec(rt, execution_id)
    return {"execution_id": str(execution_id), "machine_id": str(machine_id), "step": step,
            "kind": spec.kind.value, "params": dict(spec.params),
            "timeout_seconds": spec.timeout_seconds, "end": spec.end_of_deploy().value}  # fmt: skip


class TransferRequest(BaseModel):
    execution_id: uuid.UUID


@router.post("/transfers", status_code=201)
async def open_transfer(body: TransferRequest, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """The image transfer of a backup or restore step: the scenario's image name, filled in with this
    machine's name, MAC or UUID."""
    machine_id, _ = await deploy_caller(request, rt, body.execution_id)
    spec = await _spec(rt, body.execution_id)
    direction = {"backup": TransferDirection.BACKUP, "restore": TransferDirection.RESTORE}.get(spec.kind.value)
    if direction is None:
        raise E.IMAGE_INVALID(reason=f"a {spec.kind.value} step moves no image")
    async with rt.pool.connection() as conn, conn.transaction():
        facts, _ = await machine_facts(conn, str(machine_id))
        opened = await images.open_transfer(
            rt.eventlog,
            conn,
            spec.param("image", ""),
            direction,
            machine=facts,
            machine_id=machine_id,
            execution_id=body.execution_id,
            ttl=request.app.state.transfer_ttl,
            lease=request.app.state.backup_lease,
            actor=f"deploy:{machine_id}",
        )
    return transfer_out(request, opened)


class DisksIn(BaseModel):
    execution_id: uuid.UUID
    disks: Annotated[list[dict[str, Any]], Field(max_length=64)]


@router.post("/disks", status_code=202)
async def report_disks(body: DisksIn, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """A disk configuration check's result, kept per machine for the disk viewer."""
    machine_id, _ = await deploy_caller(request, rt, body.execution_id)
    try:  # JSON bodies may say NaN, Infinity or 1e400: PostgreSQL's jsonb (the disk viewer) takes none
        disks_json = json.dumps(body.disks, sort_keys=True, allow_nan=False)
    except ValueError:
        raise E.NUMBER_INVALID(field="disks", value="NaN or Infinity", bounds="JSON numbers") from None
    event = DiskLayoutReported(machine_id=machine_id, execution_id=body.execution_id, disks_json=disks_json)
    result = await rt.eventlog.append(
        stream_id(subjects.DISKS, machine_id),
        ANY_VERSION,
        [NewEvent(event, command_metadata(f"deploy:{machine_id}"))],
    )
    return {"position": result.position}


async def _spec(rt: Runtime, execution_id: uuid.UUID) -> ScenarioSpec:
    for rec in await rt.eventlog.read_stream(stream_id(subjects.EXECUTION, execution_id)):
        if isinstance(rec.event, ExecutionQueued):
            return rec.event.spec
    raise E.UNAUTHENTICATED()
