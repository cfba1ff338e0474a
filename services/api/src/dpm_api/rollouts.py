"""Staged rollouts as operators start and follow them: the rings are machine groups, resolved to
their machines when the rollout starts (a machine in two rings belongs to the first), recorded as
RolloutStarted; the updater runs it and records each ring's start and the end (``ring-<id>``),
which the projection ``api.rollouts`` shows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import NO_STREAM, Conn, EventLog
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import RolloutCompleted, RolloutHalted, RolloutRingStarted, RolloutStarted
from dpm_schemas.ids import stream_id

MAX_MACHINES = 5000


class RolloutList:
    """``api.rollouts``: each rollout, its ring under way, and how it ended."""

    name = "rollouts"
    schema = "api"
    tables = ("rollouts",)
    reads_metadata = True  # started_by is the starting request's actor
    event_types = tuple(t.wire_name for t in (RolloutStarted, RolloutRingStarted, RolloutHalted, RolloutCompleted))

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".rollouts (rollout_id uuid PRIMARY KEY, package_id text NOT NULL,'
            " revision integer NOT NULL, rings jsonb NOT NULL, max_failure_rate double precision NOT NULL,"
            " ring integer NOT NULL DEFAULT -1, state text NOT NULL DEFAULT 'starting', message text NOT NULL"
            " DEFAULT '', started_at timestamptz NOT NULL, started_by text NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        t = f'"{schema}".rollouts'
        for rec in events:
            e = rec.event
            if isinstance(e, RolloutStarted):
                rings = [{"group": g, "machines": len(m)} for g, m in zip(e.ring_names, e.rings, strict=True)]
                await conn.execute(
                    f"INSERT INTO {t} (rollout_id, package_id, revision, rings, max_failure_rate, started_at,"
                    " started_by) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (e.rollout_id, e.package_id, e.revision, json.dumps(rings), e.max_failure_rate,
                     rec.occurred_at, rec.metadata.actor),
                )  # fmt: skip
            elif isinstance(e, RolloutRingStarted):
                sql = f"UPDATE {t} SET ring = %s, state = 'running', message = %s WHERE rollout_id = %s"
                await conn.execute(sql, (e.ring, e.message, e.rollout_id))
            elif isinstance(e, RolloutHalted):
                await conn.execute(f"UPDATE {t} SET state = 'halted', message = %s WHERE rollout_id = %s",
                                   (e.message, e.rollout_id))  # fmt: skip
            elif isinstance(e, RolloutCompleted):
                message = f"{e.failed} of {e.delivered} deliveries failed"
                await conn.execute(f"UPDATE {t} SET state = 'completed', message = %s WHERE rollout_id = %s",
                                   (message, e.rollout_id))  # fmt: skip


async def start(
    log: EventLog, conn: Conn, *, package_id: str, rings: Sequence[str], max_failure_rate: float, actor: str
) -> RolloutStarted:
    """Resolve the rings (DPM-E106 for a group that does not exist) and record the rollout of the
    package's current revision (DPM-E276 for one that is not registered)."""
    row = await (
        await conn.execute("SELECT revision FROM api.packages WHERE package_id = %s", (package_id,))
    ).fetchone()
    if row is None:
        raise E.PACKAGE_NOT_FOUND(package=package_id)
    seen: set[uuid.UUID] = set()
    resolved: list[tuple[uuid.UUID, ...]] = []
    for group in rings:
        if await (await conn.execute("SELECT 1 FROM api.groups WHERE name = %s", (group,))).fetchone() is None:
            raise E.GROUP_NOT_FOUND(name=group)
        cur = await conn.execute("SELECT machine_id FROM api.machines WHERE group_name = %s ORDER BY name", (group,))
        members = tuple(m for (m,) in await cur.fetchall() if m not in seen)
        seen.update(members)
        resolved.append(members)
    if (total := sum(len(r) for r in resolved)) > MAX_MACHINES:  # one event carries them all
        raise E.INVALID_REQUEST(reason=f"{total} machines in these rings; a rollout takes at most {MAX_MACHINES}")
    event = RolloutStarted(rollout_id=uuid.uuid4(), package_id=package_id, revision=row[0], ring_names=tuple(rings),
                           rings=tuple(resolved), max_failure_rate=max_failure_rate)  # fmt: skip
    meta = command_metadata(actor)
    await log.append(stream_id(subjects.ROLLOUT, event.rollout_id), NO_STREAM, [NewEvent(event, meta)], conn=conn)
    return event


async def list_rollouts(conn: Conn, rollout_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT rollout_id, package_id, revision, rings, max_failure_rate, ring, state, message, started_at,"
        " started_by FROM api.rollouts WHERE %s::uuid IS NULL OR rollout_id = %s ORDER BY started_at DESC",
        (rollout_id, rollout_id),
    )
    keys = ("rollout_id", "package_id", "revision", "rings", "max_failure_rate", "ring", "state", "message",
            "started_at", "started_by")  # fmt: skip
    return [dict(zip(keys, row, strict=True)) for row in await cur.fetchall()]
