"""The effect outbox: a decision's effects are inserted in the decision's own transaction and run
by ``rounds.drain`` only after it committed. A rollback leaves no row, so nothing is sent; a crash
after the commit leaves the row, so the effect runs at least once. A claim is a lease: a replica
that dies while running one hands it to the next after ``LEASE`` seconds."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from dpm_runtime.eventlog import Conn
from dpm_scheduler.domain.effects import Effect, Reboot, SchedulePower, Shutdown, Wake
from dpm_schemas.events.schedules import ScheduleAction

LEASE = 120.0
KINDS: dict[str, type] = {"wake": Wake, "reboot": Reboot, "shutdown": Shutdown, "schedule-power": SchedulePower}
NAMES = {v: k for k, v in KINDS.items()}


def ddl(schema: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{schema}".effects (effect_id uuid PRIMARY KEY, seq bigserial,'
        " kind text NOT NULL, body jsonb NOT NULL, claimed_until timestamptz)",
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
class Outbox:
    schema: str

    @property
    def table(self) -> str:
        return f'"{self.schema}".effects'

    async def put(self, conn: Conn, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            await conn.execute(
                f"INSERT INTO {self.table} (effect_id, kind, body) VALUES (%s, %s, %s)",
                (uuid.uuid4(), NAMES[type(effect)], encode(effect)),
            )

    async def claim(self, conn: Conn, now: datetime, limit: int = 50) -> list[tuple[uuid.UUID, Effect]]:
        """Take the oldest unclaimed (or abandoned) effects for ``LEASE`` seconds; commit before running."""
        cur = await conn.execute(
            f"UPDATE {self.table} SET claimed_until = %s WHERE effect_id IN (SELECT effect_id FROM {self.table}"
            " WHERE claimed_until IS NULL OR claimed_until < %s ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING effect_id, kind, body, seq",
            (now + timedelta(seconds=LEASE), now, limit),
        )
        rows = sorted(await cur.fetchall(), key=lambda r: r[3])
        return [(r[0], decode(r[1], r[2])) for r in rows]

    async def done(self, conn: Conn, effect_id: uuid.UUID) -> bool:
        """Forget a run effect; False when another replica already did (its outcome is recorded)."""
        cur = await conn.execute(f"DELETE FROM {self.table} WHERE effect_id = %s RETURNING 1", (effect_id,))
        return await cur.fetchone() is not None
