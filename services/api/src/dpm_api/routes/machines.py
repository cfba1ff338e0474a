"""Machines: register, list, show, delete. Changes are events; reads come from the projection."""

from __future__ import annotations

import uuid
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from dpm_api.deps import ActorDep, RuntimeDep
from dpm_api.domain import new_machine_id
from dpm_api.projections import COLUMNS
from dpm_runtime.eventlog import NO_STREAM, StreamConflict
from dpm_schemas import E, Metadata, NewEvent, subjects
from dpm_schemas.events import MachineDeleted, MachineRegistered
from dpm_schemas.ids import normalize_mac, stream_id

router = APIRouter(prefix="/machines", tags=["machines"])


class MachineIn(BaseModel):
    name: str = Field(min_length=1, max_length=253)
    macs: list[str] = Field(min_length=1, max_length=32)
    smbios_uuid: uuid.UUID | None = None
    ip: IPv4Address | IPv6Address | None = None
    group: str = Field(default="new-machines", min_length=1, max_length=200)
    os_type: str | None = Field(default=None, max_length=100)


class MachineOut(BaseModel):
    machine_id: uuid.UUID
    name: str
    macs: list[str]
    smbios_uuid: uuid.UUID | None
    ip: str | None
    group_name: str
    os_type: str | None
    registered_at: datetime
    online: bool
    last_boot_at: datetime | None
    last_boot_arch: str | None
    last_boot_stage: str | None
    boot_count: int
    position: int


class Accepted(BaseModel):
    machine_id: uuid.UUID
    position: int


def _macs(raw: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in raw:
        try:
            mac = normalize_mac(value)
        except ValueError:
            raise E.INVALID_MAC(value=value) from None
        if mac not in out:
            out.append(mac)
    return tuple(out)


@router.post("", status_code=201, response_model=Accepted)
async def register_machine(body: MachineIn, rt: RuntimeDep, actor: ActorDep, response: Response) -> Accepted:
    """Register a machine by hand; its id derives from its SMBIOS UUID or first MAC."""
    macs = _macs(body.macs)
    machine_id = new_machine_id(macs, body.smbios_uuid)
    event = MachineRegistered(
        machine_id=machine_id,
        name=body.name,
        macs=macs,
        smbios_uuid=body.smbios_uuid,
        ip=body.ip,
        group=body.group,
        os_type=body.os_type,
    )
    try:
        result = await rt.eventlog.append(
            stream_id(subjects.MACHINE, machine_id), NO_STREAM, [NewEvent(event, Metadata.new(actor=actor))]
        )
    except StreamConflict:
        raise E.MACHINE_EXISTS(machine_id=machine_id) from None
    await rt.projections["machines"].wait_for(result.position, timeout=5)
    response.headers["Location"] = f"/machines/{machine_id}"
    return Accepted(machine_id=machine_id, position=result.position)


@router.get("", response_model=list[MachineOut])
async def list_machines(rt: RuntimeDep, min_position: int = 0) -> list[MachineOut]:
    """List machines; ``min_position`` waits until the list includes that change."""
    if min_position:
        await rt.projections["machines"].wait_for(min_position, timeout=5)
    async with rt.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM api.machines ORDER BY name, machine_id")
        return [MachineOut(**dict(zip(COLUMNS, row, strict=True))) for row in await cur.fetchall()]


@router.get("/{machine_id}", response_model=MachineOut)
async def show_machine(machine_id: uuid.UUID, rt: RuntimeDep) -> MachineOut:
    """One machine."""
    async with rt.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM api.machines WHERE machine_id = %s", (machine_id,))
        row = await cur.fetchone()
    if row is None:
        raise E.MACHINE_NOT_FOUND(machine_id=machine_id)
    return MachineOut(**dict(zip(COLUMNS, row, strict=True)))


@router.delete("/{machine_id}", status_code=202, response_model=Accepted)
async def delete_machine(machine_id: uuid.UUID, rt: RuntimeDep, actor: ActorDep) -> Accepted:
    """Delete a machine (its history stays in the log)."""
    sid = stream_id(subjects.MACHINE, machine_id)
    history = await rt.eventlog.read_stream(sid)
    if not history or isinstance(history[-1].event, MachineDeleted):
        raise E.MACHINE_NOT_FOUND(machine_id=machine_id)
    event = MachineDeleted(machine_id=machine_id)
    result = await rt.eventlog.append(sid, history[-1].stream_version, [NewEvent(event, Metadata.new(actor=actor))])
    await rt.projections["machines"].wait_for(result.position, timeout=5)
    return Accepted(machine_id=machine_id, position=result.position)
