"""Operators' power-ons: the Wake-on-LAN goes into the effect outbox with the PowerOnSent that says
so (sent after the commit, through the one pacing gate), and a durable watch gives the machine the
remote power-on timeout to come online or network-boot (DPM-E113 otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from dpm_runtime.consumer import Retry
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.effects_sql import Outbox
from dpm_scheduler.adapters.wol import destination
from dpm_scheduler.domain.effects import Wake
from dpm_schemas import E, Metadata, NewEvent, RecordedEvent, subjects
from dpm_schemas.events import (
    MachineBooted,
    MachineCameOnline,
    MachineWentOffline,
    PowerOnFailed,
    PowerOnRequested,
    PowerOnSent,
    PowerOnSucceeded,
)
from dpm_schemas.ids import stream_id

Clock = Callable[[], datetime]
ACTOR = "scheduler"


def watch_ddl(schema: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{schema}".power_watch (machine_id uuid PRIMARY KEY,'
        " deadline timestamptz NOT NULL)",
        f'CREATE TABLE IF NOT EXISTS "{schema}".presence (machine_id uuid PRIMARY KEY, online boolean NOT NULL,'
        " position bigint NOT NULL)",
    ]


async def _append(eventlog: EventLog, conn: Conn, rec: RecordedEvent, event: object, machine_id: object) -> None:
    meta = Metadata(correlation_id=rec.metadata.correlation_id, actor=ACTOR).caused_by(rec)
    await eventlog.append(stream_id(subjects.POWER, machine_id), ANY_VERSION, [NewEvent(event, meta)], conn=conn)  # type: ignore[arg-type]


async def power_on_requested(
    rec: RecordedEvent,
    conn: Conn,
    *,
    directory: Directory,
    outbox: Outbox,
    eventlog: EventLog,
    driver_name: str,
    port: int,
    timeout: float,
    clock: Clock,
) -> None:
    """Queue the power-on and start watching: the machine has ``timeout`` seconds to answer."""
    event = rec.event
    assert isinstance(event, PowerOnRequested)
    target = await directory.power_target(conn, event.machine_id)
    if target is None:  # the directory consumer may not have seen the registration yet
        raise Retry(f"machine {event.machine_id} not in the directory yet", delay=0.5)
    if await directory.online(conn, event.machine_id):  # already running: nothing to wake, nothing to wait for
        await _append(
            eventlog, conn, rec, PowerOnSucceeded(machine_id=event.machine_id, via="already-on"), event.machine_id
        )
        return
    await outbox.put(conn, (Wake(event.machine_id),))
    await conn.execute(
        f'INSERT INTO "{directory.schema}".power_watch (machine_id, deadline) VALUES (%s, %s)'
        " ON CONFLICT (machine_id) DO UPDATE SET deadline = excluded.deadline",
        (event.machine_id, clock() + timedelta(seconds=timeout)),
    )
    sent = PowerOnSent(
        machine_id=event.machine_id, driver=driver_name, macs=target.macs, destination=f"{destination(target)}:{port}"
    )
    await _append(eventlog, conn, rec, sent, event.machine_id)


async def presence_changed(rec: RecordedEvent, conn: Conn, *, schema: str) -> None:
    """Remember whether each machine's agent is online (a power-on of a running machine answers at once)."""
    event = rec.event
    assert isinstance(event, MachineCameOnline | MachineWentOffline)
    await conn.execute(
        f'INSERT INTO "{schema}".presence (machine_id, online, position) VALUES (%s, %s, %s)'
        f" ON CONFLICT (machine_id) DO UPDATE SET online = excluded.online, position = excluded.position"
        f' WHERE "{schema}".presence.position < excluded.position',
        (event.machine_id, isinstance(event, MachineCameOnline), rec.position),
    )


async def machine_answered(rec: RecordedEvent, conn: Conn, *, eventlog: EventLog, directory: Directory) -> None:
    """The agent came online, or one of the machine's NICs network-booted: a pending power-on succeeded."""
    event = rec.event
    if isinstance(event, MachineBooted):
        machine_id, via = await directory.by_mac(conn, event.mac), "netboot"
        if machine_id is None:
            return
    else:
        assert isinstance(event, MachineCameOnline)
        await presence_changed(rec, conn, schema=directory.schema)
        machine_id, via = event.machine_id, "agent"
    cur = await conn.execute(
        f'DELETE FROM "{directory.schema}".power_watch WHERE machine_id = %s RETURNING 1', (machine_id,)
    )
    if await cur.fetchone() is not None:
        await _append(eventlog, conn, rec, PowerOnSucceeded(machine_id=machine_id, via=via), machine_id)


async def expire_power_watches(
    *, pool: AsyncConnectionPool[Conn], eventlog: EventLog, directory: Directory, timeout: float, clock: Clock
) -> int:
    """Fail every power-on whose deadline passed (DPM-E113); durable, so a restart loses none."""
    schema = directory.schema
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            f'DELETE FROM "{schema}".power_watch WHERE machine_id IN (SELECT machine_id FROM "{schema}".power_watch'
            " WHERE deadline < %s FOR UPDATE SKIP LOCKED) RETURNING machine_id",
            (clock(),),
        )
        expired = [r[0] for r in await cur.fetchall()]
        for machine_id in expired:
            err = E.POWER_ON_FAILED(machine=await directory.name(conn, machine_id), timeout=round(timeout))
            failed = PowerOnFailed(machine_id=machine_id, code=err.code, reason=err.message)
            meta = Metadata.new(actor=ACTOR)
            await eventlog.append(
                stream_id(subjects.POWER, machine_id), ANY_VERSION, [NewEvent(failed, meta)], conn=conn
            )
    return len(expired)
