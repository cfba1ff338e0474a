"""Machine and group changes: validate, then append the events -- and the identity claims that keep
MACs and SMBIOS UUIDs unique -- in one transaction. Routes call these; they hold no HTTP concerns."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TypeVar

from pydantic import ValidationError

from dpm_api import discovered, membership
from dpm_api.domain.csvfile import ImportPlan, MachineSpec, identities
from dpm_api.domain.rules import check_group_network, check_machine_name
from dpm_api.domain.view import new_machine_id
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import ANY_VERSION, NO_STREAM, AppendResult, Conn, EventLog, StreamConflict
from dpm_schemas import E, Metadata, NewEvent, subjects
from dpm_schemas.base import Event
from dpm_schemas.errors import DpmError
from dpm_schemas.events import (
    GroupDefined,
    GroupDeleted,
    GroupRenamed,
    IdentityClaimed,
    IdentityReleased,
    MachineDeleted,
    MachineEdited,
    MachineRegistered,
    ScheduleSaved,
)
from dpm_schemas.events.groups import NEW_MACHINES
from dpm_schemas.ids import stream_id, unusable_mac

T = TypeVar("T")


async def group_exists(conn: Conn, name: str) -> bool:
    if name == NEW_MACHINES:
        return True
    cur = await conn.execute("SELECT 1 FROM api.groups WHERE name = %s", (name,))
    return await cur.fetchone() is not None


async def _check(log: EventLog, conn: Conn, spec: MachineSpec, machine_id: uuid.UUID | None) -> None:
    """Name, MACs and group, from every edge (form, CSV, discovery, agent enrolment). The group is
    checked against the log under its lock: a concurrent deletion of it either committed (refused
    here, DPM-E106) or waits and then finds this machine in it (DPM-E107)."""
    check_machine_name(spec.name, spec.os_type)
    for mac in spec.macs:
        if (why := unusable_mac(mac)) is not None:
            raise E.MAC_UNUSABLE(value=mac, what=why)
    await membership.lock_groups(conn, spec.group)
    if not await membership.group_exists(log, conn, spec.group):
        raise E.GROUP_NOT_FOUND(name=spec.group)
    row = await (
        await conn.execute(
            "SELECT machine_id FROM api.machines WHERE lower(name) = lower(%s) AND machine_id IS DISTINCT FROM %s",
            (spec.name, machine_id),
        )
    ).fetchone()
    if row is not None:  # names taken before names were claimed in the log
        raise E.MACHINE_NAME_TAKEN(name=spec.name, machine_id=row[0])


def name_identity(name: str) -> str:
    """Machine names are claimed like MACs (stream ``identity-name:<name>``), ignoring case, so two
    concurrent registrations cannot both take one and a lookup by name finds one machine."""
    return f"name:{name.lower()}"


async def _claim(
    log: EventLog, conn: Conn, identity: str, machine_id: uuid.UUID, meta: Metadata, *, mine_ok: bool = True
) -> None:
    """Append IdentityClaimed unless this machine already owns it (``mine_ok``); any other owner is DPM-E105."""
    sid = stream_id(subjects.IDENTITY, identity)
    history = await log.read_stream(sid, conn=conn)
    last = history[-1] if history else None
    if last is not None and isinstance(last.event, IdentityClaimed):
        if mine_ok and last.event.machine_id == machine_id:
            return
        raise _taken(identity, last.event.machine_id)
    try:
        await log.append(
            sid,
            last.stream_version if last else NO_STREAM,
            [NewEvent(IdentityClaimed(identity=identity, machine_id=machine_id), meta)],
            conn=conn,
        )
    except StreamConflict:  # claimed by a concurrent registration that committed first
        raise _taken(identity, "(registered concurrently)") from None


def _taken(identity: str, owner: object) -> DpmError:
    kind, value = identity.split(":", 1)
    if kind == "name":
        return E.MACHINE_NAME_TAKEN(name=value, machine_id=owner)
    return E.DUPLICATE_IDENTITY(identity=_show(identity), machine_id=owner)


async def _release(log: EventLog, conn: Conn, identity: str, machine_id: uuid.UUID, meta: Metadata) -> None:
    sid = stream_id(subjects.IDENTITY, identity)
    history = await log.read_stream(sid, conn=conn)
    if history and isinstance(history[-1].event, IdentityClaimed) and history[-1].event.machine_id == machine_id:
        await log.append(
            sid,
            history[-1].stream_version,
            [NewEvent(IdentityReleased(identity=identity, machine_id=machine_id), meta)],
            conn=conn,
        )


def _show(identity: str) -> str:
    kind, value = identity.split(":", 1)
    return f"MAC {value.upper().replace(':', '-')}" if kind == "mac" else f"SMBIOS UUID {value}"


async def register(log: EventLog, conn: Conn, spec: MachineSpec, *, actor: str) -> tuple[uuid.UUID, AppendResult]:
    """Register a machine; its id derives from its SMBIOS UUID or first MAC. Call inside a transaction."""
    if actor not in discovered.AUTO_ACTORS:  # an untouched discovered machine never blocks an operator
        for squatter in await discovered.squatters(log, conn, spec):
            await delete(log, conn, squatter, actor=actor)
    machine_id = new_machine_id(spec.macs, spec.smbios_uuid)
    await _check(log, conn, spec, machine_id)
    meta = command_metadata(actor)
    for identity in [*identities(spec), name_identity(spec.name)]:
        await _claim(log, conn, identity, machine_id, meta, mine_ok=False)
    sid = stream_id(subjects.MACHINE, machine_id)
    history = await log.read_stream(sid, conn=conn)
    if history and not isinstance(history[-1].event, MachineDeleted):
        raise E.MACHINE_EXISTS(machine_id=machine_id)
    event = MachineRegistered(machine_id=machine_id, **_payload(spec))
    result = await log.append(
        sid, history[-1].stream_version if history else NO_STREAM, [NewEvent(event, meta)], conn=conn
    )
    return machine_id, result


async def _current(log: EventLog, conn: Conn, machine_id: uuid.UUID) -> tuple[list[str], int]:
    """The identities a live machine holds now (MACs, UUID, name), and its stream version; DPM-E102
    if absent. A name it took before names were claimed is released harmlessly (nothing to release)."""
    history = await log.read_stream(stream_id(subjects.MACHINE, machine_id), conn=conn)
    state: Event | None = None
    for rec in history:
        if isinstance(rec.event, MachineRegistered | MachineEdited):
            state = rec.event
        elif isinstance(rec.event, MachineDeleted):
            state = None
    if not isinstance(state, MachineRegistered | MachineEdited):
        raise E.MACHINE_NOT_FOUND(machine_id=machine_id)
    return [*identities(state), name_identity(state.name)], history[-1].stream_version


async def edit(log: EventLog, conn: Conn, machine_id: uuid.UUID, spec: MachineSpec, *, actor: str) -> AppendResult:
    await _check(log, conn, spec, machine_id)
    held, version = await _current(log, conn, machine_id)
    meta = command_metadata(actor)
    wanted = [*identities(spec), name_identity(spec.name)]
    for identity in wanted:
        await _claim(log, conn, identity, machine_id, meta)
    for identity in held:
        if identity not in wanted:
            await _release(log, conn, identity, machine_id, meta)
    event = MachineEdited(machine_id=machine_id, **_payload(spec))
    return await log.append(stream_id(subjects.MACHINE, machine_id), version, [NewEvent(event, meta)], conn=conn)


async def delete(log: EventLog, conn: Conn, machine_id: uuid.UUID, *, actor: str) -> AppendResult:
    held, version = await _current(log, conn, machine_id)
    meta = command_metadata(actor)
    for identity in held:
        await _release(log, conn, identity, machine_id, meta)
    return await log.append(
        stream_id(subjects.MACHINE, machine_id),
        version,
        [NewEvent(MachineDeleted(machine_id=machine_id), meta)],
        conn=conn,
    )


async def machine_event(log: EventLog, conn: Conn, machine_id: uuid.UUID, event: Event, *, actor: str) -> AppendResult:
    """Append an operator's request about a live machine (power on, token revocation) to its stream."""
    _held, version = await _current(log, conn, machine_id)
    return await log.append(
        stream_id(subjects.MACHINE, machine_id), version, [NewEvent(event, command_metadata(actor))], conn=conn
    )


async def apply_import(log: EventLog, conn: Conn, plan: ImportPlan, *, actor: str) -> int:
    """Apply a planned import in the caller's transaction: all rows or none. Returns the last position."""
    await membership.lock_groups(conn, *(s.group for s in plan.create), *(s.group for _r, s, _c in plan.update))
    position = 0
    for spec in plan.create:
        _, result = await _with_line(register(log, conn, spec, actor=actor), spec)
        position = result.position
    for row, spec, _changes in plan.update:
        result = await _with_line(edit(log, conn, row.machine_id, spec, actor=actor), spec)
        position = result.position
    return position


async def _with_line(call: Awaitable[T], spec: MachineSpec) -> T:
    """Errors found while applying (unknown group, a MAC owned elsewhere) still name the CSV line."""
    try:
        return await call
    except DpmError as exc:
        if exc.code == E.CSV_INVALID.code or not spec.line:
            raise
        raise E.CSV_INVALID(line=spec.line, column=1, field=exc.code, reason=exc.message) from None


def _payload(spec: MachineSpec) -> dict[str, object]:
    return {
        "name": spec.name,
        "macs": spec.macs,
        "smbios_uuid": spec.smbios_uuid,
        "ip": spec.ip,
        "group": spec.group,
        "os_type": spec.os_type,
    }


async def define_group(log: EventLog, conn: Conn, event: GroupDefined, *, actor: str) -> AppendResult:
    check_group_network(event.name, event.subnet, event.broadcast, event.gateway)
    return await log.append(
        stream_id(subjects.GROUP, event.name), ANY_VERSION, [NewEvent(event, command_metadata(actor))], conn=conn
    )


async def delete_group(log: EventLog, conn: Conn, name: str, *, actor: str) -> AppendResult:
    """Delete an empty group: decided on the log under the group's lock, so a machine registering
    into it concurrently is either refused or keeps the group (DPM-E107)."""
    if name == NEW_MACHINES:
        raise E.GROUP_IN_USE(name=name, count="-", reason="it receives auto-registered machines and always exists")
    await membership.lock_groups(conn, name)
    if not await membership.group_exists(log, conn, name):
        raise E.GROUP_NOT_FOUND(name=name)
    if count := await membership.machines_in(log, conn, name):
        raise E.GROUP_IN_USE(name=name, count=count, reason="deleting it would orphan them")
    return await log.append(
        stream_id(subjects.GROUP, name),
        ANY_VERSION,
        [NewEvent(GroupDeleted(name=name), command_metadata(actor))],
        conn=conn,
    )


async def rename_group(log: EventLog, conn: Conn, name: str, new_name: str, *, actor: str) -> AppendResult:
    """Rename a group: its machines and the schedules that target it follow, in one transaction."""
    if NEW_MACHINES in (name, new_name):
        raise E.INVALID_REQUEST(reason=f"{NEW_MACHINES} is built in; it cannot be renamed or renamed to")
    await membership.lock_groups(conn, name, new_name)
    if not await membership.group_exists(log, conn, name):
        raise E.GROUP_NOT_FOUND(name=name)
    if await membership.group_exists(log, conn, new_name):
        raise E.INVALID_REQUEST(reason=f"a group named {new_name!r} exists")
    try:
        renamed = GroupRenamed(name=name, new_name=new_name)
    except ValidationError:
        raise E.INVALID_REQUEST(reason=f"group name {new_name!r}: letters, digits, space, . _ - (max 100)") from None
    meta = command_metadata(actor)
    rows = await (
        await conn.execute("SELECT definition FROM api.schedules WHERE definition->>'group' = %s", (name,))
    ).fetchall()
    for (definition,) in rows:
        moved = ScheduleSaved.model_validate({**definition, "group": new_name})
        await log.append(
            stream_id(subjects.SCHEDULE, moved.schedule_id), ANY_VERSION, [NewEvent(moved, meta)], conn=conn
        )
    return await log.append(stream_id(subjects.GROUP, name), ANY_VERSION, [NewEvent(renamed, meta)], conn=conn)
