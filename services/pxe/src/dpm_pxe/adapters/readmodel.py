"""Queries of the read models pxe answers a boot by: the machine a MAC belongs to (the directory),
its pending netboot (the ``netboot`` projection), and whether that projection still lags the log."""

from __future__ import annotations

import uuid

from dpm_pxe.adapters.state import SCHEMA
from dpm_pxe.domain.script import Machine, Pending
from dpm_pxe.projections import NETBOOT, Netboot
from dpm_runtime.checkpoint import applied_position
from dpm_runtime.eventlog import Conn


async def find_machine(conn: Conn, mac: str) -> Machine | None:
    row = await (
        await conn.execute(
            f"SELECT machine_id, name FROM {SCHEMA}.machine_directory WHERE %s = ANY(macs) AND NOT deleted LIMIT 1",
            (mac,),
        )
    ).fetchone()
    return Machine(row[0], row[1]) if row else None


async def pending_netboot(conn: Conn, machine_id: uuid.UUID) -> Pending | None:
    row = await (
        await conn.execute(
            f"SELECT execution_id, expires_at, position FROM {SCHEMA}.netboot WHERE machine_id = %s", (machine_id,)
        )
    ).fetchone()
    return Pending(row[0], row[1], int(row[2])) if row else None


async def netboot_lag(conn: Conn) -> bool:
    """True while the log holds a netboot request or clear the ``netboot`` projection has not applied
    yet. The last one per type is one step down the events (type, position) index each."""
    cur = await conn.execute(
        "SELECT coalesce(max(last.position), 0) FROM unnest(%s::text[]) AS t(type),"
        " LATERAL (SELECT max(e.position) AS position FROM events e WHERE e.type = t.type) AS last",
        (list(Netboot.event_types),),
    )
    row = await cur.fetchone()
    last = int(row[0]) if row else 0
    return last > (await applied_position(conn, NETBOOT) or 0)
