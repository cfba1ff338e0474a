"""The executions table (``scheduler.executions``): typed rows in, typed rows out, and the appends
of a decision's events through the handler's or the round's ``Ctx`` (which carries the run's
correlation and trace). Every time comes from the caller's clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dpm_runtime.context import ANY, Ctx
from dpm_runtime.eventlog import Conn
from dpm_scenarios import ACTIVE, OPEN, ExecutionState
from dpm_scheduler.adapters.effects_sql import Outbox
from dpm_scheduler.domain.decide import Decision
from dpm_scheduler.domain.execution import Execution
from dpm_schemas import Metadata, subjects
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.ids import stream_id

ACTOR = "scheduler"
COLUMNS = (
    "execution_id, run_id, machine_id, scenario_id, name, spec, state, netboot, deadline, step_due, ready_since,"
    " correlation_id, traceparent, step_at, woken_at"
)


def ddl(schema: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{schema}".executions ('
        " execution_id uuid PRIMARY KEY, run_id uuid NOT NULL, machine_id uuid NOT NULL, name text NOT NULL,"
        " spec jsonb NOT NULL, state text NOT NULL, queued_at bigint NOT NULL, not_before timestamptz,"
        " deadline timestamptz, step_due timestamptz, netboot boolean NOT NULL DEFAULT false)",
        f'ALTER TABLE "{schema}".executions ADD COLUMN IF NOT EXISTS scenario_id uuid',
        f'ALTER TABLE "{schema}".executions ADD COLUMN IF NOT EXISTS ready_since timestamptz',
        f'ALTER TABLE "{schema}".executions ADD COLUMN IF NOT EXISTS correlation_id uuid',
        f'ALTER TABLE "{schema}".executions ADD COLUMN IF NOT EXISTS traceparent text',
        f'ALTER TABLE "{schema}".executions ADD COLUMN IF NOT EXISTS step_at timestamptz',
        f'ALTER TABLE "{schema}".executions ADD COLUMN IF NOT EXISTS woken_at timestamptz',
        f'CREATE TABLE IF NOT EXISTS "{schema}".start_now ('
        " scenario_id uuid PRIMARY KEY, requested_at timestamptz NOT NULL)",
        f'CREATE INDEX IF NOT EXISTS executions_state ON "{schema}".executions (state, queued_at)',
        f'CREATE INDEX IF NOT EXISTS executions_machine ON "{schema}".executions (machine_id, state)',
    ]


def from_row(row: Sequence[Any]) -> Execution:
    eid, run_id, machine_id, scenario_id, name, spec, state, netboot, deadline, step_due, ready, corr, trace = row[:13]
    step_at, woken_at = row[13:15]
    return Execution(
        execution_id=eid,
        run_id=run_id,
        machine_id=machine_id,
        scenario_id=scenario_id,
        name=name,
        spec=ScenarioSpec.model_validate(spec),
        state=ExecutionState(state),
        netboot=netboot,
        deadline=deadline,
        step_due=step_due,
        ready_since=ready,
        correlation_id=corr,
        traceparent=trace,
        step_at=step_at,
        woken_at=woken_at,
    )


@dataclass
class ExecutionStore:
    schema: str
    outbox: Outbox
    kick: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the effect drain early

    async def apply(self, ctx: Ctx, d: Decision | None) -> None:
        """Save a decision in the ctx's transaction: its events, the execution's new row, and its
        effects into the outbox; once that committed, the drain is woken to run them."""
        if d is None:
            return
        await self.append(ctx, d.execution, d.events)
        await self.save(ctx.conn, d.execution)
        if d.effects:
            await self.outbox.put(ctx.conn, d.effects, ctx.metadata.traceparent)
            ctx.after_commit(self.wake_drain)

    async def logged_at(self, ctx: Ctx, clock: Callable[[], datetime]) -> datetime:
        """The log's time of the event handled (``recorded_at``): a deadline counts from when the
        report or boot happened, not from when this replica got to it (after a restart or an outage);
        the clock only for a round (position 0)."""
        if ctx.position:
            cur = await ctx.conn.execute("SELECT recorded_at FROM events WHERE position = %s", (ctx.position,))
            row = await cur.fetchone()
            if row is not None:
                return row[0]  # type: ignore[no-any-return]
        return clock()

    async def wake_drain(self) -> None:
        self.kick.set()

    @property
    def table(self) -> str:
        return f'"{self.schema}".executions'

    async def _many(self, conn: Conn, where: str, params: Sequence[object] = ()) -> list[Execution]:
        cur = await conn.execute(f"SELECT {COLUMNS} FROM {self.table} {where}", params)
        return [from_row(r) for r in await cur.fetchall()]

    async def get(self, conn: Conn, eid: uuid.UUID) -> Execution | None:
        found = await self._many(conn, "WHERE execution_id = %s FOR UPDATE", (eid,))
        return found[0] if found else None

    async def of_machine(self, conn: Conn, machine_id: uuid.UUID, state: ExecutionState) -> Execution | None:
        found = await self._many(conn, "WHERE machine_id = %s AND state = %s FOR UPDATE", (machine_id, state.value))
        return found[0] if found else None

    async def expired(self, conn: Conn, now: datetime) -> list[Execution]:
        where = "WHERE state = ANY(%s) AND deadline < %s FOR UPDATE SKIP LOCKED"
        return await self._many(conn, where, (list(ACTIVE), now))

    async def simulated_due(self, conn: Conn, now: datetime) -> list[Execution]:
        where = "WHERE state = 'running' AND step_due < %s FOR UPDATE SKIP LOCKED LIMIT 500"
        return await self._many(conn, where, (now,))

    async def ready(self, conn: Conn) -> dict[uuid.UUID, list[Execution]]:
        by_scenario: dict[uuid.UUID, list[Execution]] = {}
        for x in await self._many(conn, "WHERE state = 'ready' ORDER BY ready_since, execution_id FOR UPDATE"):
            by_scenario.setdefault(x.scenario_id or x.run_id, []).append(x)
        return by_scenario

    async def startable(self, conn: Conn, now: datetime, limit: int) -> list[Execution]:
        """The oldest queued executions due by ``now`` whose machine has none active, one per machine
        (the limit's free slots are the caller's to count)."""
        t = self.table
        where = (
            "q WHERE state = 'queued' AND (not_before IS NULL OR not_before <= %s)"
            f" AND NOT EXISTS (SELECT 1 FROM {t} a WHERE a.machine_id = q.machine_id AND a.state = ANY(%s))"
            " ORDER BY queued_at, execution_id LIMIT %s"
        )
        rows, seen = await self._many(conn, where, (now, list(ACTIVE), limit)), set()
        out = []
        for x in rows:
            if x.machine_id not in seen:  # one execution per machine at a time
                seen.add(x.machine_id)
                out.append(x)
        return out

    async def active_count(self, conn: Conn) -> int:
        """The slots taken, counted from the table on every round (no counter in memory): a restart,
        a replica or a watchdog that ended an execution is reflected at once."""
        row = await (
            await conn.execute(f"SELECT count(*) FROM {self.table} WHERE state = ANY(%s)", (list(ACTIVE),))
        ).fetchone()
        return int(row[0]) if row else 0

    async def insert(self, conn: Conn, x: Execution, *, order: int, not_before: datetime | None) -> None:
        await conn.execute(
            f"INSERT INTO {self.table} (execution_id, run_id, machine_id, name, spec, state, queued_at, not_before,"
            " scenario_id, correlation_id, traceparent) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                x.execution_id,
                x.run_id,
                x.machine_id,
                x.name,
                x.spec.model_dump_json(),
                x.state.value,
                order,
                not_before,
                x.scenario_id,
                x.correlation_id,
                x.traceparent,
            ),
        )

    async def save(self, conn: Conn, x: Execution) -> None:
        await conn.execute(
            f"UPDATE {self.table} SET state = %s, netboot = %s, deadline = %s, step_due = %s, ready_since = %s,"
            " step_at = %s, woken_at = %s WHERE execution_id = %s",
            (x.state.value, x.netboot, x.deadline, x.step_due, x.ready_since, x.step_at, x.woken_at, x.execution_id),
        )

    async def take_start_now(self, conn: Conn, scenario_id: uuid.UUID) -> bool:
        cur = await conn.execute(
            f'DELETE FROM "{self.schema}".start_now WHERE scenario_id = %s RETURNING 1', (scenario_id,)
        )
        return await cur.fetchone() is not None

    async def start_now(self, conn: Conn, scenario_id: uuid.UUID, now: datetime) -> None:
        await conn.execute(
            f'INSERT INTO "{self.schema}".start_now (scenario_id, requested_at) VALUES (%s, %s)'
            " ON CONFLICT (scenario_id) DO NOTHING",
            (scenario_id, now),
        )

    async def busy(self, conn: Conn, machines: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The machines in a scenario (queued or active), with the scenario's name."""
        cur = await conn.execute(
            f"SELECT machine_id, name FROM {self.table} WHERE machine_id = ANY(%s) AND state = ANY(%s)",
            (machines, list(OPEN)),
        )
        return {r[0]: r[1] for r in await cur.fetchall()}

    async def append(
        self, ctx: Ctx, x: Execution, events: Sequence[object], *, expected: int | None = ANY, stream: str | None = None
    ) -> None:
        """Append to the execution's stream (or ``stream``); the ctx gives the run's causality."""
        if events:
            sid = stream or stream_id(subjects.EXECUTION, x.execution_id)
            await ctx.append(sid, events, expected=expected)  # type: ignore[arg-type]


def run_metadata(x: Execution) -> Metadata:
    """The cause of a timer round's appends for ``x``: the correlation and trace stored with its run."""
    return Metadata(correlation_id=x.correlation_id or uuid.uuid4(), actor=ACTOR, traceparent=x.traceparent)
