"""Scenario changes and run requests: validate, then append. Routes call these in a transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from dpm_api import prewake
from dpm_api.domain.scenarios import busy_reason, check_available, check_spec
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import NO_STREAM, AppendResult, Conn, EventLog
from dpm_scenarios import ExecutionState, Refuse, plan_start
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.events import (
    MachineStatusCleared,
    MulticastStartRequested,
    ScenarioDeleted,
    ScenarioRunRequested,
    ScenarioSaved,
    SuspendRequested,
)
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id

NEEDS_REBOOT = f"{E.NETBOOT_NEEDS_REBOOT.code}: powered on and 'reboot at start' is not set"
WAITS_FOR = {ExecutionState.WAITING_BOOT: "its network boot", ExecutionState.WAITING_ONLINE: "its agent"}


async def find(conn: Conn, ref: str) -> tuple[uuid.UUID, str, int, ScenarioSpec]:
    """A live scenario by id or name: (id, name, revision, spec); DPM-E144 otherwise."""
    try:
        key: object = uuid.UUID(ref)
        where = "scenario_id = %s"
    except ValueError:
        key, where = ref, "name = %s"
    row = await (
        await conn.execute(
            f"SELECT scenario_id, name, revision, spec FROM api.scenarios WHERE {where} AND NOT deleted", (key,)
        )
    ).fetchone()
    if row is None:
        raise E.SCENARIO_NOT_FOUND(scenario=ref)
    return row[0], row[1], row[2], ScenarioSpec.model_validate(row[3])


async def save(
    log: EventLog, conn: Conn, scenario_id: uuid.UUID | None, name: str, spec: ScenarioSpec, *, actor: str
) -> tuple[ScenarioSaved, int]:
    """Create (``scenario_id`` None) or revise a scenario; the id never changes, the revision counts.
    Returns the event and its log position."""
    check_spec(spec)
    if spec.multicast is not None:
        clash = await (
            await conn.execute(
                "SELECT name FROM api.scenarios WHERE multicast_group = %s AND NOT deleted"
                " AND scenario_id IS DISTINCT FROM %s",
                (spec.multicast.group, scenario_id),
            )
        ).fetchone()
        if clash is not None:
            raise E.MULTICAST_GROUP_IN_USE(group=spec.multicast.group, other=clash[0])
    taken = await (
        await conn.execute(
            "SELECT 1 FROM api.scenarios WHERE name = %s AND NOT deleted AND scenario_id IS DISTINCT FROM %s",
            (name, scenario_id),
        )
    ).fetchone()
    if taken is not None:
        raise E.SCENARIO_INVALID(reason=f"the name {name!r} is taken")
    if scenario_id is None:
        scenario_id, version = uuid.uuid4(), NO_STREAM
    else:
        history = await log.read_stream(stream_id(subjects.SCENARIO, scenario_id), conn=conn)
        if not history or isinstance(history[-1].event, ScenarioDeleted):
            raise E.SCENARIO_NOT_FOUND(scenario=str(scenario_id))
        version = history[-1].stream_version
    saved = ScenarioSaved(scenario_id=scenario_id, revision=version + 1, name=name, spec=spec)
    result = await log.append(
        stream_id(subjects.SCENARIO, scenario_id), version, [NewEvent(saved, command_metadata(actor))], conn=conn
    )
    return saved, result.position


async def delete(log: EventLog, conn: Conn, ref: str, *, actor: str) -> AppendResult:
    """Delete a scenario; runs already requested keep the revision they pinned."""
    scenario_id, *_ = await find(conn, ref)
    return await log.append(
        stream_id(subjects.SCENARIO, scenario_id),
        None,
        [NewEvent(ScenarioDeleted(scenario_id=scenario_id), command_metadata(actor))],
        conn=conn,
    )


async def _targets_state(conn: Conn, machine_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, ...]]:
    """Per machine: (id, name, power error, latest execution state, cleared, online); DPM-E102 if absent."""
    rows = await (
        await conn.execute(
            "SELECT m.machine_id, m.name, m.power_error, e.state, e.cleared, m.online FROM api.machines m"
            " LEFT JOIN LATERAL (SELECT state, cleared FROM api.executions x WHERE x.machine_id = m.machine_id"
            " ORDER BY queued_at DESC LIMIT 1) e ON true WHERE m.machine_id = ANY(%s)",
            (machine_ids,),
        )
    ).fetchall()
    found = {r[0]: tuple(r) for r in rows}
    for machine_id in machine_ids:
        if machine_id not in found:
            raise E.MACHINE_NOT_FOUND(machine_id=machine_id)
    return found


async def preview(conn: Conn, ref: str, machine_ids: list[uuid.UUID]) -> dict[str, Any]:
    """What a run would do, before anything runs: per machine how it starts (or why it cannot), the
    conflicts that would refuse the run, what it would wait for, and the multicast conditions."""
    scenario_id, name, revision, spec = await find(conn, ref)
    found = await _targets_state(conn, machine_ids)
    checked = await prewake.verdicts(conn, spec, machine_ids)
    machines, conflicts = [], []
    for machine_id in dict.fromkeys(machine_ids):
        entry, conflict = _preview_one(spec, machine_id, found[machine_id], checked.get(machine_id))
        machines.append(entry)
        conflicts += [conflict] if conflict else []
    active = await (
        await conn.execute(
            "SELECT count(*) FROM api.executions WHERE state NOT IN ('completed', 'failed', 'suspended')"
        )
    ).fetchone()
    multicast = spec.multicast.model_dump(mode="json") if spec.multicast else None
    return {
        "scenario": name,
        "scenario_id": str(scenario_id),
        "revision": revision,
        "kind": spec.kind.value,
        "steps": [spec.kind.value],
        "machines": machines,
        "conflicts": conflicts,
        "executions_ahead": int(active[0]) if active else 0,
        "multicast": multicast,
        "would_run": not conflicts,
    }


def _preview_one(
    spec: ScenarioSpec, machine_id: uuid.UUID, found: tuple[Any, ...], verdict: prewake.Verdict | None
) -> tuple[dict[str, Any], str | None]:
    """One target's line of the preview, and the conflict it adds (a conflict refuses the run)."""
    _, machine, power_error, state, cleared, online = found
    busy = busy_reason(state, bool(cleared), power_error)
    plan = plan_start(spec, online=bool(online))
    entry: dict[str, Any] = {"machine": machine, "machine_id": str(machine_id), "online": bool(online)}
    entry["warnings"] = list(verdict.warnings) if verdict else []
    if busy is not None:
        entry.update(start=None, waits_for=None, problem=f"{E.MACHINE_BUSY.code}: {busy}")
        return entry, f"{machine} is {busy}"
    if verdict is not None and verdict.refusal is not None:
        entry.update(start=None, waits_for=None, problem=f"{verdict.refusal.code}: {verdict.refusal.message}")
        return entry, f"{machine}: {verdict.refusal.message}"
    if isinstance(plan, Refuse):
        entry.update(start=None, waits_for=None, problem=NEEDS_REBOOT)
    else:
        entry.update(start=plan.action.value, waits_for=WAITS_FOR.get(plan.wait), problem=None)
    return entry, None


# Run requests the scheduler has not turned into executions yet: the execution read model cannot
# show them, so two requests a moment apart would both pass the busy check without this claim.
# Written in the request's transaction (a guard of the write side, like a unique index); a claim
# lapses ten minutes after the run was due, should the scheduler never queue it.
DDL = [
    "CREATE TABLE IF NOT EXISTS api.run_claims (machine_id uuid NOT NULL, run_id uuid NOT NULL,"
    " expires_at timestamptz NOT NULL, PRIMARY KEY (machine_id, run_id))",
]


async def run(
    log: EventLog, conn: Conn, ref: str, machine_ids: list[uuid.UUID], not_before: datetime | None, *, actor: str
) -> ScenarioRunRequested:
    """Request a run, refused (DPM-E140) if any target is running, failed, or in power-on error --
    or was assigned a moment ago and is still being queued (concurrent requests meet here). A kind
    saved before it was refused at save is refused here too (DPM-E115), and a restore its image or
    a target's last disk check says cannot work (DPM-E158, E174-E177: ``dpm_api.prewake``)."""
    scenario_id, name, revision, spec = await find(conn, ref)
    check_available(spec.kind)
    targets = await _check_free(conn, machine_ids)
    await prewake.refuse(conn, spec, machine_ids)  # a restore that cannot fit: refused before any wake
    request = ScenarioRunRequested(
        run_id=uuid.uuid4(),
        scenario_id=scenario_id,
        revision=revision,
        name=name,
        spec=spec,
        machine_ids=tuple(dict.fromkeys(machine_ids)),
        not_before=not_before,
    )
    await log.append(
        stream_id(subjects.ASSIGNMENT, request.run_id),
        NO_STREAM,
        [NewEvent(request, command_metadata(actor))],
        conn=conn,
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO api.run_claims (machine_id, run_id, expires_at)"
            " VALUES (%s, %s, greatest(now(), %s::timestamptz) + interval '10 minutes') ON CONFLICT DO NOTHING",
            [(m, request.run_id, not_before) for m in targets],
        )
    return request


async def _check_free(conn: Conn, machine_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Refuse (DPM-E140) a run on a machine that is busy, or claimed by a request a moment ago; the
    targets, sorted. They are locked in that order: two requests never wait on each other crosswise."""
    targets = sorted(set(machine_ids))
    for machine_id in targets:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (f"run:{machine_id}",))
    await conn.execute(
        "DELETE FROM api.run_claims c WHERE c.machine_id = ANY(%s) AND EXISTS (SELECT 1 FROM api.executions x"
        " WHERE x.run_id = c.run_id AND x.machine_id = c.machine_id)",
        (targets,),
    )
    claimed = {row[0] for row in await (await conn.execute(
        "SELECT machine_id FROM api.run_claims WHERE machine_id = ANY(%s) AND expires_at > now()", (targets,)
    )).fetchall()}  # fmt: skip
    found = await _targets_state(conn, machine_ids)
    for machine_id in machine_ids:
        _, machine, power_error, state, cleared, _online = found[machine_id]
        if machine_id in claimed:
            raise E.MACHINE_BUSY(machine=machine, state="assigned a moment ago (its execution is being queued)")
        if (why := busy_reason(state, bool(cleared), power_error)) is not None:
            raise E.MACHINE_BUSY(machine=machine, state=why)
    return targets


async def start_now(log: EventLog, conn: Conn, ref: str, *, actor: str) -> AppendResult:
    """ "Start now" for a gathering multicast restore (remote updates have none: DPM-E147)."""
    scenario_id, name, _revision, spec = await find(conn, ref)
    if spec.multicast is None:
        raise E.NO_START_NOW(scenario=name, reason="it is not a multicast scenario")
    if spec.kind is ScenarioKind.REMOTE_UPDATE:
        raise E.NO_START_NOW(scenario=name, reason="remote updates have no start now")
    return await log.append(
        stream_id(subjects.SCENARIO, scenario_id),
        None,
        [NewEvent(MulticastStartRequested(scenario_id=scenario_id), command_metadata(actor))],
        conn=conn,
    )


async def suspend(log: EventLog, conn: Conn, execution_id: uuid.UUID, *, actor: str) -> AppendResult:
    """Interrupt an execution; the scheduler stops it (two-phase for a running step)."""
    row = await (
        await conn.execute("SELECT run_id, state FROM api.executions WHERE execution_id = %s", (execution_id,))
    ).fetchone()
    if row is None:
        raise E.INVALID_REQUEST(reason=f"no execution {execution_id}")
    if row[1] in ("completed", "failed", "suspended"):
        raise E.INVALID_REQUEST(reason=f"execution {execution_id} is already {row[1]}")
    return await log.append(
        stream_id(subjects.ASSIGNMENT, row[0]),
        None,
        [NewEvent(SuspendRequested(execution_id=execution_id, run_id=row[0]), command_metadata(actor))],
        conn=conn,
    )


async def clear(log: EventLog, conn: Conn, machine_ids: list[uuid.UUID], *, actor: str) -> int:
    """Error clear: the machines may take a scenario again. Returns the last position (0: none).
    Refused while an interrupt is still being confirmed: releasing then made the original's next
    execution fail."""
    found = await _targets_state(conn, machine_ids)
    for machine_id in machine_ids:
        _, machine, _power_error, state, _cleared, _online = found[machine_id]
        if state == "suspending":
            raise E.MACHINE_BUSY(machine=machine, state="being interrupted; release it once the interrupt is confirmed")
    position = 0
    for machine_id in machine_ids:
        result = await log.append(
            stream_id(subjects.MACHINE, machine_id),
            None,
            [NewEvent(MachineStatusCleared(machine_id=machine_id), command_metadata(actor))],
            conn=conn,
        )
        position = result.position
    return position
