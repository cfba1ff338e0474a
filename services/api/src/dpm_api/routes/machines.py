"""Machines: register, edit, delete, list, show, CSV export/import. Changes are events (handlers.py);
reads come from the projection."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from dpm_api import commands, handlers
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_api.domain import csvfile
from dpm_api.domain.csvfile import MachineSpec
from dpm_api.domain.view import MachineRow
from dpm_api.projections import COLUMNS, row_from_db
from dpm_api.routes.packages import updater_url
from dpm_runtime.http import max_body
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.agent_protocol import MAX_FILE, Action, Command
from dpm_schemas.events import AgentTokenRevoked, PowerOnRequested
from dpm_schemas.events.groups import NEW_MACHINES
from dpm_schemas.ids import UnusableMac, normalize_mac
from dpm_schemas.text import Label, Name
from dpm_schemas.version import DPM_VERSION

router = APIRouter(prefix="/machines", tags=["machines"])
MAX_CSV = 16 * 1024 * 1024  # a CSV import of a large fleet, beyond the api's default body limit


class MachineIn(BaseModel):
    name: Annotated[Name, Field(max_length=253)]
    macs: list[Label] = Field(min_length=1, max_length=32)
    smbios_uuid: uuid.UUID | None = None
    ip: IPv4Address | IPv6Address | None = None
    group: Name = NEW_MACHINES
    os_type: Label | None = None


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
    agent_version: str | None
    agent_outdated: bool = False  # the agent's version differs from the server's (it needs an upgrade)
    power_error: str | None = None
    power_state: str = "off"  # on | off | remote-power-on-error
    position: int


class Accepted(BaseModel):
    machine_id: uuid.UUID
    position: int


def _out(row: MachineRow) -> MachineOut:
    outdated = row.agent_version is not None and row.agent_version != DPM_VERSION
    state = "remote-power-on-error" if row.power_error else "on" if row.online else "off"
    return MachineOut(**row._asdict(), agent_outdated=outdated, power_state=state)


def _spec(body: MachineIn) -> MachineSpec:
    macs: list[str] = []
    for value in body.macs:
        try:
            mac = normalize_mac(value)
        except UnusableMac as exc:
            raise E.MAC_UNUSABLE(value=value, what=exc.why) from None
        except ValueError:
            raise E.INVALID_MAC(value=value) from None
        if mac not in macs:
            macs.append(mac)
    return MachineSpec(
        name=body.name,
        macs=tuple(macs),
        smbios_uuid=body.smbios_uuid,
        ip=body.ip,
        group=body.group,
        os_type=body.os_type,
    )


@router.post("", status_code=201, response_model=Accepted)
async def register_machine(body: MachineIn, rt: RuntimeDep, actor: ActorDep, response: Response) -> Accepted:
    """Register a machine by hand; its id derives from its SMBIOS UUID or first MAC."""
    spec = _spec(body)
    async with rt.pool.connection() as conn, conn.transaction():
        machine_id, result = await handlers.register(rt.eventlog, conn, spec, actor=actor)
    await rt.projections["machines"].wait_for(result.position, timeout=5)
    response.headers["Location"] = f"/machines/{machine_id}"
    return Accepted(machine_id=machine_id, position=result.position)


@router.get("", response_model=list[MachineOut])
async def list_machines(
    rt: RuntimeDep, _who: ViewerDep, group: str | None = None, min_position: int = 0
) -> list[MachineOut]:
    """List machines, optionally of one group; ``min_position`` waits until the list includes that change."""
    if min_position:
        await rt.projections["machines"].wait_for(min_position, timeout=5)
    return [_out(row) for row in await machine_rows(rt, group=group)]


async def machine_rows(rt: Runtime, *, group: str | None = None) -> list[MachineRow]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM api.machines"
    params: tuple[object, ...] = ()
    if group is not None:
        sql, params = sql + " WHERE group_name = %s", (group,)
    async with rt.pool.connection() as conn:
        cur = await conn.execute(sql + " ORDER BY name, machine_id", params)
        return [row_from_db(raw) for raw in await cur.fetchall()]


@router.get("/export", response_class=PlainTextResponse, responses={200: {"content": {"text/csv": {}}}})
async def export_machines(rt: RuntimeDep, _who: ViewerDep) -> PlainTextResponse:
    """Every machine as CSV (name, macs, smbios_uuid, ip, group, os_type); `import` reads it back losslessly."""
    return PlainTextResponse(
        csvfile.render(await machine_rows(rt)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="machines.csv"'},
    )


@router.post("/import")
@max_body(MAX_CSV)
async def import_machines(request: Request, rt: RuntimeDep, actor: ActorDep, dry_run: bool = False) -> dict[str, Any]:
    """Upsert machines from CSV by MAC/SMBIOS UUID; ``dry_run`` shows the diff. All rows apply, or none."""
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise E.CSV_INVALID(line=1, column=1, field="-", reason=f"not UTF-8 text ({exc.reason})") from None
    specs = csvfile.parse(text)
    async with rt.pool.connection() as conn, conn.transaction():
        plan = csvfile.plan_import(specs, await machine_rows(rt))
        for spec in plan.create + [spec for _row, spec, _ in plan.update]:
            if not await handlers.group_exists(conn, spec.group):
                raise E.CSV_INVALID(line=spec.line, column=0, field="group", reason=f"no group named {spec.group!r}")
        position = 0 if dry_run else await handlers.apply_import(rt.eventlog, conn, plan, actor=actor)
    if position:
        await rt.projections["machines"].wait_for(position, timeout=10)
    return {"dry_run": dry_run, **plan.summary()}


@router.get("/{machine_id}", response_model=MachineOut)
async def show_machine(machine_id: uuid.UUID, rt: RuntimeDep, _who: ViewerDep) -> MachineOut:
    """One machine."""
    async with rt.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM api.machines WHERE machine_id = %s", (machine_id,))
        row = await cur.fetchone()
    if row is None:
        raise E.MACHINE_NOT_FOUND(machine_id=machine_id)
    return _out(row_from_db(row))


@router.put("/{machine_id}", response_model=Accepted)
async def edit_machine(machine_id: uuid.UUID, body: MachineIn, rt: RuntimeDep, actor: ActorDep) -> Accepted:
    """Replace a machine's editable fields (name, MACs, SMBIOS UUID, IP, group, OS type)."""
    spec = _spec(body)
    async with rt.pool.connection() as conn, conn.transaction():
        result = await handlers.edit(rt.eventlog, conn, machine_id, spec, actor=actor)
    await rt.projections["machines"].wait_for(result.position, timeout=5)
    return Accepted(machine_id=machine_id, position=result.position)


@router.delete("/{machine_id}", status_code=202, response_model=Accepted)
async def delete_machine(machine_id: uuid.UUID, rt: RuntimeDep, actor: ActorDep) -> Accepted:
    """Delete a machine (its history stays in the log); its MACs and UUID become free again."""
    async with rt.pool.connection() as conn, conn.transaction():
        result = await handlers.delete(rt.eventlog, conn, machine_id, actor=actor)
    await rt.projections["machines"].wait_for(result.position, timeout=5)
    return Accepted(machine_id=machine_id, position=result.position)


@router.post("/{machine_id}/power/on", status_code=202, response_model=Accepted)
async def power_on(machine_id: uuid.UUID, rt: RuntimeDep, actor: ActorDep) -> Accepted:
    """Ask for a machine to be powered on (Wake-on-LAN to its group's broadcast address)."""
    async with rt.pool.connection() as conn, conn.transaction():
        result = await handlers.machine_event(
            rt.eventlog, conn, machine_id, PowerOnRequested(machine_id=machine_id), actor=actor
        )
    return Accepted(machine_id=machine_id, position=result.position)


@router.post("/{machine_id}/agent/revoke", status_code=202, response_model=Accepted)
async def revoke_agent(machine_id: uuid.UUID, rt: RuntimeDep, actor: ActorDep) -> Accepted:
    """Revoke the machine's agent token: the gateway refuses it from now on and drops the connection."""
    async with rt.pool.connection() as conn, conn.transaction():
        result = await handlers.machine_event(
            rt.eventlog, conn, machine_id, AgentTokenRevoked(machine_id=machine_id), actor=actor
        )
    return Accepted(machine_id=machine_id, position=result.position)


class CommandIn(BaseModel):
    action: Action
    path: str | None = Field(default=None, max_length=4096)
    content_base64: str | None = Field(default=None, max_length=4 * 1024 * 1024 + 16)
    mode: int = Field(default=0o644, ge=0, le=0o777)
    timeout: float = Field(
        default=30.0, ge=1, le=3600, description="seconds; at least 1: an offline agent is told apart from a slow one"
    )
    upload_id: uuid.UUID | None = Field(
        default=None, description="put_file of any size: a completed upload (POST /packages/uploads) to fetch"
    )


def _inline(body: CommandIn) -> bytes | None:
    """The content carried in the request (base64), at most a frame's worth."""
    if body.content_base64 is None:
        return None
    try:
        content = base64.b64decode(body.content_base64, validate=True)
    except ValueError:  # binascii.Error, and ValueError for non-ASCII text
        raise E.INVALID_REQUEST(reason="content_base64 is not base64") from None
    if len(content) > MAX_FILE:
        raise E.INVALID_REQUEST(reason=f"files above {MAX_FILE} bytes go by upload_id (`dpm files put` does that)")
    return content


class CommandOut(BaseModel):
    command_id: uuid.UUID
    ok: bool
    entries: list[dict[str, Any]] = []


@router.post("/{machine_id}/commands", response_model=CommandOut)
@max_body(MAX_FILE * 2)  # put_file content travels base64-encoded in the JSON body
async def command_machine(
    machine_id: uuid.UUID, body: CommandIn, request: Request, rt: RuntimeDep, actor: ActorDep
) -> CommandOut:
    """Tell the machine's agent to shut down, reboot, put or delete a file, or list a directory. A
    put_file larger than a frame names an upload instead of carrying the content; the agent fetches
    it from the updater."""
    if body.action is Action.INSTALL:
        raise E.INVALID_REQUEST(reason="packages are installed by remote-update scenarios, not by a command")
    cmd_id = uuid.uuid4()
    if body.upload_id is not None:
        if body.action is not Action.PUT_FILE or body.content_base64 is not None:
            raise E.INVALID_REQUEST(reason="upload_id is for put_file, instead of content_base64")
        fetch = await commands.file_fetch(rt, machine_id, cmd_id, body.upload_id, updater_url(request), actor=actor)
        cmd = Command(id=cmd_id, action=body.action, path=body.path, fetch=fetch, mode=body.mode, timeout=body.timeout)
    else:
        cmd = Command(id=cmd_id, action=body.action, path=body.path, content=_inline(body), mode=body.mode)
    result = await commands.send(rt, machine_id, cmd, timeout=body.timeout, actor=actor)
    return CommandOut(command_id=cmd.id, ok=result.ok, entries=[e.model_dump() for e in result.entries])
