"""A remote-update step held for its machine's agent upgrade (seed catalog §10.2 item 44: after an
upgrade, wait for the agent's readiness before the next remote update).

``hold`` (from the step handler, in its transaction): deliver the agent's own package first -- an
automatic delivery of its own, so its end is an AutoUpdateEnded and the machine's update history
shows it -- report the step's progress, and note the held step in ``updater.agent_waits``, written in
the same transaction as those events (like ``auto_granted``: the handler's own table, not a read
model, so a rebuild of the updater's schema forgets a step held at that moment, which its
no-response watchdog then fails). ``take`` hands each held step to exactly one handler: the row is
deleted in the handler's transaction, so a redelivered event, or another replica, finds nothing. A
held step whose execution ends (its watchdog, a cancel) is taken too, and the timer round settles
what no event says (``domain.agent_upgrade.on_tick``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from dpm_runtime.eventlog import NO_STREAM, Conn
from dpm_runtime.handlers import Ctx
from dpm_schemas import subjects
from dpm_schemas.agent_protocol import InstallOrder
from dpm_schemas.events import StepRequested
from dpm_schemas.ids import stream_id
from dpm_updater import auto_sql
from dpm_updater.domain.agent_upgrade import Wait
from dpm_updater.orders import Delivery, grant_and_order
from dpm_updater.projections import SCHEMA

WAITS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.agent_waits (execution_id uuid PRIMARY KEY, machine_id uuid NOT NULL,"
    " upgrade_id uuid NOT NULL UNIQUE, current text NOT NULL, installed_at timestamptz,"
    " request jsonb NOT NULL, held_at timestamptz NOT NULL DEFAULT now())"
)
_COLUMNS = "execution_id, machine_id, upgrade_id, current, installed_at, request"


async def agent_version(conn: Conn, machine_id: uuid.UUID) -> str | None:
    """The version the machine's agent said hello with last (``updater.presence``), if any."""
    cur = await conn.execute(f"SELECT agent_version FROM {SCHEMA}.presence WHERE machine_id = %s", (machine_id,))
    row = await cur.fetchone()
    return row[0] if row else None


async def hold(ctx: Ctx, e: StepRequested, what: Delivery, current: str, server: str) -> InstallOrder:
    """Grant the upgrade and note the held step (the caller started the step's own stream, so a
    redelivered request never gets here); the order to send once the transaction commits."""
    granted, order = grant_and_order(what, server)
    await ctx.append(stream_id(subjects.DELIVERY, what.delivery_id), [granted], expected=NO_STREAM)
    await ctx.conn.execute(
        f"INSERT INTO {SCHEMA}.agent_waits (execution_id, machine_id, upgrade_id, current, request)"
        " VALUES (%s, %s, %s, %s, %s)",
        (e.execution_id, e.machine_id, what.delivery_id, current, e.model_dump_json()),
    )
    await auto_sql.granted(ctx.conn, what.delivery_id, e.machine_id)  # busy for automatic delivery at once
    return order


async def waits_of(conn: Conn, machine_id: uuid.UUID) -> list[tuple[Wait, StepRequested]]:
    """The machine's held steps, locked for this transaction."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM {SCHEMA}.agent_waits WHERE machine_id = %s ORDER BY held_at FOR UPDATE",
        (machine_id,),
    )
    return [_wait(row) for row in await cur.fetchall()]


async def wait_for_upgrade(conn: Conn, upgrade_id: uuid.UUID) -> tuple[Wait, StepRequested] | None:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM {SCHEMA}.agent_waits WHERE upgrade_id = %s FOR UPDATE", (upgrade_id,)
    )
    row = await cur.fetchone()
    return _wait(row) if row else None


async def installed(conn: Conn, execution_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(f"UPDATE {SCHEMA}.agent_waits SET installed_at = %s WHERE execution_id = %s", (at, execution_id))


async def every_wait(conn: Conn) -> list[tuple[Wait, StepRequested]]:
    """Every held step not being settled by another transaction (the timer's look), locked."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM {SCHEMA}.agent_waits ORDER BY held_at FOR UPDATE SKIP LOCKED")
    return [_wait(row) for row in await cur.fetchall()]


async def take(conn: Conn, execution_id: uuid.UUID) -> None:
    await conn.execute(f"DELETE FROM {SCHEMA}.agent_waits WHERE execution_id = %s", (execution_id,))


def _wait(row: tuple[object, ...]) -> tuple[Wait, StepRequested]:
    execution_id, machine_id, upgrade_id, current, installed_at, request = row
    wait = Wait(execution_id, machine_id, upgrade_id, str(current), installed_at)  # type: ignore[arg-type]
    return wait, StepRequested.model_validate(request)
