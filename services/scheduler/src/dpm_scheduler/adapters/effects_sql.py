"""The effect outbox: a decision's effects are inserted in the decision's own transaction and run
by ``rounds.drain`` only after it committed. A rollback leaves no row, so nothing is sent; a crash
after the commit leaves the row, so the effect runs at least once.

The lease on an effect being run is a session-level advisory lock of the drain's connection, not a
timestamp: a replica that dies (SIGKILL) drops its connection and so its leases at once, and the
next drain runs what it had not finished -- a repeat, never a loss, and no wait for a lease to
expire. A row also keeps the traceparent of the decision, so running it joins the run's trace.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from dpm_runtime.eventlog import Conn
from dpm_scheduler.domain.effects import Effect, Reboot, SchedulePower, Shutdown, Wake
from dpm_schemas.events.schedules import ScheduleAction

LEASE_LOCK = 0x5C4EF  # advisory lock class of the outbox's leases (the key is the row's seq)
KINDS: dict[str, type] = {"wake": Wake, "reboot": Reboot, "shutdown": Shutdown, "schedule-power": SchedulePower}
NAMES = {v: k for k, v in KINDS.items()}


def ddl(schema: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{schema}".effects (effect_id uuid PRIMARY KEY, seq bigserial,'
        " kind text NOT NULL, body jsonb NOT NULL)",
        f'ALTER TABLE "{schema}".effects ADD COLUMN IF NOT EXISTS traceparent text',
    ]


def encode(effect: Effect) -> str:
    return json.dumps(asdict(effect), default=str)


def decode(kind: str, body: dict[str, Any]) -> Effect:
    cls = KINDS[kind]
    if cls is SchedulePower:
        return SchedulePower(
            schedule_id=uuid.UUID(body["schedule_id"]),
            name=body["name"],
            action=ScheduleAction(body["action"]),
            machine_ids=tuple(uuid.UUID(m) for m in body["machine_ids"]),
        )
    fields = {k: uuid.UUID(v) if v is not None else None for k, v in body.items()}
    return cls(**fields)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Pending:
    seq: int
    effect_id: uuid.UUID
    effect: Effect
    traceparent: str | None


@dataclass(frozen=True)
class Outbox:
    schema: str

    @property
    def table(self) -> str:
        return f'"{self.schema}".effects'

    async def put(self, conn: Conn, effects: tuple[Effect, ...], traceparent: str | None = None) -> None:
        for effect in effects:
            await conn.execute(
                f"INSERT INTO {self.table} (effect_id, kind, body, traceparent) VALUES (%s, %s, %s, %s)",
                (uuid.uuid4(), NAMES[type(effect)], encode(effect), traceparent),
            )

    async def pending(self, conn: Conn, limit: int = 50) -> list[Pending]:
        """The oldest committed effects, leased or not (``lease`` says which one this drain may run)."""
        cur = await conn.execute(
            f"SELECT seq, effect_id, kind, body, traceparent FROM {self.table} ORDER BY seq LIMIT %s", (limit,)
        )
        return [Pending(r[0], r[1], decode(r[2], r[3]), r[4]) for r in await cur.fetchall()]

    async def lease(self, session: Conn, p: Pending) -> bool:
        """Take the effect for ``session`` (autocommit); False when another drain holds it or ran it."""
        cur = await session.execute("SELECT pg_try_advisory_lock(%s, %s)", (LEASE_LOCK, _key(p.seq)))
        row = await cur.fetchone()
        if not (row and row[0]):
            return False
        cur = await session.execute(f"SELECT 1 FROM {self.table} WHERE effect_id = %s", (p.effect_id,))
        if await cur.fetchone() is None:  # run and forgotten since we listed it
            await self.release(session, p)
            return False
        return True

    async def release(self, session: Conn, p: Pending) -> None:
        await session.execute("SELECT pg_advisory_unlock(%s, %s)", (LEASE_LOCK, _key(p.seq)))

    async def done(self, conn: Conn, effect_id: uuid.UUID) -> bool:
        """Forget a run effect; False when another replica already did (its outcome is recorded)."""
        cur = await conn.execute(f"DELETE FROM {self.table} WHERE effect_id = %s RETURNING 1", (effect_id,))
        return await cur.fetchone() is not None


def _key(seq: int) -> int:
    """The advisory lock's int4 key for a bigserial (wraps after 2**31 effects; a collision only
    makes one drain skip an effect the next drain runs)."""
    return seq % 2**31
