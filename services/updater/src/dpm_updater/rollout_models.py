"""The updater's read model of staged rollouts (a projection of the log, rebuildable as any other):
each rollout with the ring under way and who got the package in it, each machine's delivery of it
and how it ended; and the two reads ``rollouts.py`` decides on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    AutoUpdateEnded,
    PackageDeliveryGranted,
    RolloutCompleted,
    RolloutHalted,
    RolloutRingStarted,
    RolloutStarted,
)
from dpm_updater.projections import SCHEMA


class Rollouts:
    """``updater.rollouts``: each staged rollout, its ring under way and who got the package in it;
    ``rollout_machines``: each machine's delivery of a rollout and how it ended."""

    name = "rollouts"
    schema = SCHEMA
    tables = ("rollouts", "rollout_machines")
    event_types = (
        RolloutStarted.wire_name,
        RolloutRingStarted.wire_name,
        RolloutHalted.wire_name,
        RolloutCompleted.wire_name,
        PackageDeliveryGranted.wire_name,
        AutoUpdateEnded.wire_name,
    )

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".rollouts (rollout_id uuid PRIMARY KEY, started jsonb NOT NULL,'
            " ring integer NOT NULL DEFAULT -1, ring_machines uuid[] NOT NULL DEFAULT '{}',"
            " state text NOT NULL DEFAULT 'running');"
            f'CREATE TABLE IF NOT EXISTS "{schema}".rollout_machines (rollout_id uuid NOT NULL,'
            " machine_id uuid NOT NULL, delivery_id uuid NOT NULL UNIQUE, state text NOT NULL DEFAULT 'open',"
            " PRIMARY KEY (rollout_id, machine_id));"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        r, m = f'"{schema}".rollouts', f'"{schema}".rollout_machines'
        for rec in events:
            e = rec.event
            if isinstance(e, RolloutStarted):
                started = json.dumps(e.model_dump(mode="json"))
                await conn.execute(f"INSERT INTO {r} (rollout_id, started) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                   (e.rollout_id, started))  # fmt: skip
            elif isinstance(e, RolloutRingStarted):
                await conn.execute(f"UPDATE {r} SET ring = %s, ring_machines = %s WHERE rollout_id = %s",
                                   (e.ring, list(e.delivered), e.rollout_id))  # fmt: skip
            elif isinstance(e, RolloutHalted | RolloutCompleted):
                state = "halted" if isinstance(e, RolloutHalted) else "completed"
                await conn.execute(f"UPDATE {r} SET state = %s WHERE rollout_id = %s", (state, e.rollout_id))
            elif isinstance(e, PackageDeliveryGranted) and e.rollout_id is not None:
                await conn.execute(f"INSERT INTO {m} (rollout_id, machine_id, delivery_id) VALUES (%s, %s, %s)"
                                   " ON CONFLICT DO NOTHING", (e.rollout_id, e.machine_id, e.execution_id))  # fmt: skip
            elif isinstance(e, AutoUpdateEnded):
                await conn.execute(f"UPDATE {m} SET state = %s WHERE delivery_id = %s AND state = 'open'",
                                   ("ok" if e.ok else "failed", e.delivery_id))  # fmt: skip


@dataclass(frozen=True, slots=True)
class RolloutState:
    started: RolloutStarted
    ring: int
    state: str
    outcomes: tuple[bool | None, ...]  # the ring's deliveries: True installed, False failed, None under way
    failed_total: int  # in the rings before it
    delivered_total: int


async def rollout_of_delivery(conn: Conn, delivery_id: UUID) -> UUID | None:
    cur = await conn.execute(f"SELECT rollout_id FROM {SCHEMA}.rollout_machines WHERE delivery_id = %s", (delivery_id,))
    row = await cur.fetchone()
    return row[0] if row else None


async def rollout_state(conn: Conn, rollout_id: UUID) -> RolloutState | None:
    cur = await conn.execute(
        f"SELECT started, ring, state, ring_machines FROM {SCHEMA}.rollouts WHERE rollout_id = %s", (rollout_id,)
    )
    row = await cur.fetchone()
    if row is None:
        return None
    started, ring, state, current = RolloutStarted.model_validate(row[0]), row[1], row[2], set(row[3])
    cur = await conn.execute(
        f"SELECT machine_id, state FROM {SCHEMA}.rollout_machines WHERE rollout_id = %s", (rollout_id,)
    )
    machines = await cur.fetchall()
    ours = [s for m, s in machines if m in current]
    before = [s for m, s in machines if m not in current]
    outcomes = tuple(None if s == "open" else s == "ok" for s in ours)
    return RolloutState(started, ring, state, outcomes, before.count("failed"), len(before))
