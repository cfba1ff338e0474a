"""Scheduler reactions. Message first, dependencies as keyword parameters (bound in bootstrap)."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address

from dpm_runtime.consumer import Retry
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_scheduler.power.driver import PowerDriver, PowerTarget
from dpm_scheduler.power.wol import destination
from dpm_schemas import Metadata, NewEvent, RecordedEvent, subjects
from dpm_schemas.events import PowerOnRequested, PowerOnSent
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
    rec: RecordedEvent, conn: Conn, *, driver: PowerDriver, eventlog: EventLog, schema: str, port: int
) -> None:
    event = rec.event
    assert isinstance(event, PowerOnRequested)
    target = await power_target(conn, schema, event.machine_id)
    if target is None:  # the directory consumer may not have seen the registration yet
        raise Retry(f"machine {event.machine_id} not in the directory yet", delay=0.5)
    await driver.power_on(target)
    sent = PowerOnSent(
        machine_id=event.machine_id, driver=driver.name, macs=target.macs, destination=f"{destination(target)}:{port}"
    )
    await eventlog.append(
        stream_id(subjects.POWER, event.machine_id),
        ANY_VERSION,
        [NewEvent(sent, Metadata(correlation_id=rec.metadata.correlation_id, actor="scheduler").caused_by(rec))],
        conn=conn,
    )
