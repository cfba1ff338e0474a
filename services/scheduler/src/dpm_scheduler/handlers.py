"""Scheduler reactions. Message first, dependencies as keyword parameters (bound in bootstrap)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from ipaddress import IPv4Address

from psycopg_pool import AsyncConnectionPool

from dpm_runtime.consumer import Retry
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_scheduler.power.driver import PowerDriver, PowerTarget
from dpm_scheduler.power.wol import Spacing, destination
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


async def power_target(conn: Conn, schema: str, machine_id: uuid.UUID) -> PowerTarget | None:
    """The machine's MACs and its group's WOL broadcast, from this service's own directory."""
    cur = await conn.execute(
        f'SELECT m.macs, g.wol_broadcast FROM "{schema}".machine_directory m'
        f' LEFT JOIN "{schema}".group_directory g ON g.name = m.group_name AND NOT g.deleted'
        " WHERE m.machine_id = %s AND NOT m.deleted",
        (machine_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return PowerTarget(str(machine_id), tuple(row[0]), IPv4Address(row[1]) if row[1] else None)


async def power_on_requested(
    rec: RecordedEvent,
    conn: Conn,
    *,
    driver: PowerDriver,
    eventlog: EventLog,
    schema: str,
    port: int,
    timeout: float,
    spacing: Spacing,
) -> None:
    """Send the power-on and start watching: the machine has ``timeout`` seconds to answer."""
    event = rec.event
    assert isinstance(event, PowerOnRequested)
    target = await power_target(conn, schema, event.machine_id)
    if target is None:  # the directory consumer may not have seen the registration yet
        raise Retry(f"machine {event.machine_id} not in the directory yet", delay=0.5)
    cur = await conn.execute(f'SELECT online FROM "{schema}".presence WHERE machine_id = %s', (event.machine_id,))
    row = await cur.fetchone()
    if row is not None and row[0]:  # already running: nothing to wake, nothing to wait for
        await eventlog.append(
            stream_id(subjects.POWER, event.machine_id),
            ANY_VERSION,
            [
                NewEvent(
                    PowerOnSucceeded(machine_id=event.machine_id, via="already-on"),
                    Metadata(correlation_id=rec.metadata.correlation_id, actor="scheduler").caused_by(rec),
                )
            ],
            conn=conn,
        )
        return
    await spacing.wait()
    await driver.power_on(target)
    await conn.execute(
        f'INSERT INTO "{schema}".power_watch (machine_id, deadline) VALUES (%s, now() + %s)'
        " ON CONFLICT (machine_id) DO UPDATE SET deadline = excluded.deadline",
        (event.machine_id, timedelta(seconds=timeout)),
    )
    sent = PowerOnSent(
        machine_id=event.machine_id, driver=driver.name, macs=target.macs, destination=f"{destination(target)}:{port}"
    )
    await eventlog.append(
        stream_id(subjects.POWER, event.machine_id),
        ANY_VERSION,
        [NewEvent(sent, Metadata(correlation_id=rec.metadata.correlation_id, actor="scheduler").caused_by(rec))],
        conn=conn,
    )


def watch_ddl(schema: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{schema}".power_watch (machine_id uuid PRIMARY KEY,'
        " deadline timestamptz NOT NULL)",
        f'CREATE TABLE IF NOT EXISTS "{schema}".presence (machine_id uuid PRIMARY KEY, online boolean NOT NULL,'
        " position bigint NOT NULL)",
    ]


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


async def machine_answered(rec: RecordedEvent, conn: Conn, *, eventlog: EventLog, schema: str) -> None:
    """The agent came online, or one of the machine's NICs network-booted: a pending power-on succeeded."""
    event = rec.event
    if isinstance(event, MachineBooted):
        cur = await conn.execute(
            f'SELECT machine_id FROM "{schema}".machine_directory WHERE %s = ANY(macs) AND NOT deleted', (event.mac,)
        )
        row = await cur.fetchone()
        if row is None:
            return
        machine_id, via = row[0], "netboot"
    else:
        assert isinstance(event, MachineCameOnline)
        await presence_changed(rec, conn, schema=schema)
        machine_id, via = event.machine_id, "agent"
    cur = await conn.execute(f'DELETE FROM "{schema}".power_watch WHERE machine_id = %s RETURNING 1', (machine_id,))
    if await cur.fetchone() is not None:
        await eventlog.append(
            stream_id(subjects.POWER, machine_id),
            ANY_VERSION,
            [
                NewEvent(
                    PowerOnSucceeded(machine_id=machine_id, via=via),
                    Metadata(correlation_id=rec.metadata.correlation_id, actor="scheduler").caused_by(rec),
                )
            ],
            conn=conn,
        )


async def expire_power_watches(
    *, pool: AsyncConnectionPool[Conn], eventlog: EventLog, schema: str, timeout: float
) -> int:
    """Fail every power-on whose deadline passed (DPM-E113); durable, so a restart loses none."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            f'DELETE FROM "{schema}".power_watch WHERE machine_id IN (SELECT machine_id FROM "{schema}".power_watch'
            " WHERE deadline < now() FOR UPDATE SKIP LOCKED) RETURNING machine_id"
        )
        expired = [r[0] for r in await cur.fetchall()]
        for machine_id in expired:
            cur = await conn.execute(
                f'SELECT name FROM "{schema}".machine_directory WHERE machine_id = %s', (machine_id,)
            )
            row = await cur.fetchone()
            err = E.POWER_ON_FAILED(machine=row[0] if row else machine_id, timeout=round(timeout))
            await eventlog.append(
                stream_id(subjects.POWER, machine_id),
                ANY_VERSION,
                [
                    NewEvent(
                        PowerOnFailed(machine_id=machine_id, code=err.code, reason=err.message),
                        Metadata.new(actor="scheduler"),
                    )
                ],
                conn=conn,
            )
    return len(expired)
