"""What automatic delivery reads of the updater's own read models (presence, deliveries, the
catalogue): plain queries, in the handler's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

from dpm_runtime.eventlog import Conn
from dpm_schemas.packages import AGENT_PACKAGE_ID, Package, Urgency
from dpm_updater.domain.delivery import Stored
from dpm_updater.projections import SCHEMA


async def online_machines(conn: Conn) -> list[uuid.UUID]:
    rows = await (
        await conn.execute(f"SELECT machine_id FROM {SCHEMA}.presence WHERE online ORDER BY machine_id")
    ).fetchall()
    return [r[0] for r in rows]


async def online(conn: Conn, machine_id: uuid.UUID) -> bool:
    row = await (
        await conn.execute(f"SELECT online FROM {SCHEMA}.presence WHERE machine_id = %s", (machine_id,))
    ).fetchone()
    return bool(row and row[0])


async def busy(conn: Conn, machine_id: uuid.UUID, now: datetime) -> bool:
    """A delivery to the machine is under way (a step or an automatic one, not ended nor expired; an
    operator's file put, or an install queued for a later boot or time, does not count) -- or an
    automatic one was granted that the deliveries read model has not applied yet (``auto_granted``,
    written with the grant: the read model lags the handler's own appends) -- or a remote update is
    held for its agent's upgrade (``agent_waits``: the agent restarts, then that step goes first)."""
    row = await (
        await conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.deliveries"
            " WHERE machine_id = %s AND NOT ended AND expires_at > %s AND purpose IN ('remote-update', 'auto-update'))"
            f" OR EXISTS (SELECT 1 FROM {SCHEMA}.auto_granted g WHERE g.machine_id = %s"
            f" AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.deliveries d WHERE d.execution_id = g.delivery_id))"
            f" OR EXISTS (SELECT 1 FROM {SCHEMA}.agent_waits w WHERE w.machine_id = %s)",
            (machine_id, now, machine_id, machine_id),
        )
    ).fetchone()
    return bool(row and row[0])


AUTO_GRANTED_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.auto_granted (delivery_id uuid PRIMARY KEY, machine_id uuid NOT NULL,"
    " granted_at timestamptz NOT NULL DEFAULT now())"
)


async def granted(conn: Conn, delivery_id: uuid.UUID, machine_id: uuid.UUID) -> None:
    """Note a grant in the handler's own transaction; rows older than a day are of no more use."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.auto_granted (delivery_id, machine_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (delivery_id, machine_id),
    )
    await conn.execute(f"DELETE FROM {SCHEMA}.auto_granted WHERE granted_at < now() - interval '1 day'")


async def brought_the_agent(conn: Conn, delivery_id: uuid.UUID) -> bool:
    """Whether the delivery carried the agent's own package."""
    cur = await conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.deliveries WHERE execution_id = %s AND %s = ANY(packages))",
        (delivery_id, AGENT_PACKAGE_ID),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def delivered(conn: Conn, machine_id: uuid.UUID, *, failed_too: bool) -> set[tuple[str, int]]:
    """(package, revision) pairs automatic delivery already brought the machine (or is bringing);
    ``failed_too``: count failed ones as had (only notify-now tries them again)."""
    states = ["open", "ok", "failed"] if failed_too else ["open", "ok"]
    rows = await (
        await conn.execute(
            f"SELECT package_id, revision FROM {SCHEMA}.auto_updates WHERE machine_id = %s AND state = ANY(%s)",
            (machine_id, states),
        )
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


async def catalogue_due(conn: Conn, high_before: datetime | None) -> dict[str, Stored]:
    """Highest-urgency packages, and high ones registered at or before ``high_before`` (None: none)."""
    rows = await (
        await conn.execute(
            f"SELECT definition, content_sha256, content_size, file_name FROM {SCHEMA}.packages"
            " WHERE definition->>'urgency' = %s OR (definition->>'urgency' = %s AND registered_at <= %s)",
            (Urgency.HIGHEST.value, Urgency.HIGH.value, high_before),
        )
    ).fetchall()
    found = [Stored(Package.model_validate(d), sha, size, name) for d, sha, size, name in rows]
    return {s.package.id: s for s in found}


async def auto_time(conn: Conn, machine_id: uuid.UUID) -> tuple[str, str] | None:
    """The machine's auto-update time (HH:MM, zone), if it has one."""
    cur = await conn.execute(
        f"SELECT at, timezone FROM {SCHEMA}.auto_update_times WHERE machine_id = %s", (machine_id,)
    )
    row = await cur.fetchone()
    return (row[0], row[1]) if row else None


async def timed_online_machines(conn: Conn) -> list[uuid.UUID]:
    cur = await conn.execute(
        f"SELECT t.machine_id FROM {SCHEMA}.auto_update_times t JOIN {SCHEMA}.presence p USING (machine_id)"
        " WHERE p.online ORDER BY t.machine_id"
    )
    return [r[0] for r in await cur.fetchall()]


async def expired_auto_deliveries(conn: Conn, now: datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(delivery, machine) of automatic deliveries whose lifetime passed with no final report."""
    cur = await conn.execute(
        f"SELECT execution_id, machine_id FROM {SCHEMA}.deliveries"
        " WHERE purpose = 'auto-update' AND NOT ended AND expires_at <= %s ORDER BY expires_at LIMIT 1000",
        (now,),
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]
