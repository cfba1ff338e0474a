"""The durable watches of operators' power-ons (``scheduler.power_watch``): until when a machine has
to come online or network-boot, with the request's correlation and trace, so the DPM-E113 of a
timer round joins the operator's conversation. A restart loses none."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from dpm_runtime.eventlog import Conn
from dpm_schemas import Metadata


def ddl(schema: str) -> list[str]:
    table = f'"{schema}".power_watch'
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (machine_id uuid PRIMARY KEY, deadline timestamptz NOT NULL)",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS correlation_id uuid",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS traceparent text",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS sent_at timestamptz",
    ]


@dataclass(frozen=True)
class Watch:
    machine_id: uuid.UUID
    cause: Metadata  # of the operator's request: the failure is appended within it
    sent: bool = True  # the outbox drain sent its wake-up (else DPM-E173: not the machine's fault)


@dataclass(frozen=True)
class PowerWatches:
    schema: str

    @property
    def table(self) -> str:
        return f'"{self.schema}".power_watch'

    async def watch(self, conn: Conn, machine_id: uuid.UUID, deadline: datetime, cause: Metadata) -> None:
        await conn.execute(
            f"INSERT INTO {self.table} (machine_id, deadline, correlation_id, traceparent) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (machine_id) DO UPDATE SET deadline = excluded.deadline,"
            " correlation_id = excluded.correlation_id, traceparent = excluded.traceparent, sent_at = NULL",
            (machine_id, deadline, cause.correlation_id, cause.traceparent),
        )

    async def sent(self, conn: Conn, machine_id: uuid.UUID, deadline: datetime, at: datetime) -> None:
        """The wake-up went out at ``at`` (the drain, perhaps only after a restart): the timeout counts
        from then, and an expiry knows the machine was woken."""
        await conn.execute(
            f"UPDATE {self.table} SET sent_at = %s, deadline = %s WHERE machine_id = %s AND sent_at IS NULL",
            (at, deadline, machine_id),
        )

    async def answered(self, conn: Conn, machine_id: uuid.UUID) -> bool:
        """End the machine's watch; True when there was one (its power-on succeeded)."""
        cur = await conn.execute(f"DELETE FROM {self.table} WHERE machine_id = %s RETURNING 1", (machine_id,))
        return await cur.fetchone() is not None

    async def expired(self, conn: Conn, now: datetime, *, actor: str) -> list[Watch]:
        """End and return every watch whose deadline passed (rows another replica holds are skipped)."""
        cur = await conn.execute(
            f"DELETE FROM {self.table} WHERE machine_id IN (SELECT machine_id FROM {self.table}"
            " WHERE deadline < %s FOR UPDATE SKIP LOCKED) RETURNING machine_id, correlation_id, traceparent, sent_at",
            (now,),
        )
        return [
            Watch(r[0], Metadata(correlation_id=r[1] or uuid.uuid4(), actor=actor, traceparent=r[2]), r[3] is not None)
            for r in await cur.fetchall()
        ]
