"""The schedules table (``scheduler.schedules``: each definition with its next firing, kept by the
``schedules`` consumer and advanced by the firing round) and the scenario directory's lookup.
Payloads are stored with their type and version, so they decode correctly after an upcast."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from dpm_runtime.eventlog import Conn
from dpm_schemas import codec
from dpm_schemas.events import ScenarioSaved, ScheduleSaved


def ddl(schema: str) -> list[str]:
    table = f'"{schema}".schedules'
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (schedule_id uuid PRIMARY KEY, payload bytea NOT NULL,"
        " next_at timestamptz, position bigint NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS schedules_due ON {table} (next_at)",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS type text",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS version integer",
        # rows from before the version was kept: ScheduleSaved has only ever been written at version 1
        f"UPDATE {table} SET type = 'ScheduleSaved', version = 1 WHERE version IS NULL",
    ]


@dataclass(frozen=True)
class Due:
    schedule: ScheduleSaved
    position: int  # of its ScheduleSaved: the scenario directory must have applied it before a run


@dataclass(frozen=True)
class ScheduleTable:
    schema: str

    @property
    def table(self) -> str:
        return f'"{self.schema}".schedules'

    async def save(self, conn: Conn, e: ScheduleSaved, next_at: datetime | None, position: int) -> None:
        await conn.execute(
            f"INSERT INTO {self.table} (schedule_id, type, version, payload, next_at, position)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (schedule_id) DO UPDATE SET type = excluded.type,"
            " version = excluded.version, payload = excluded.payload, next_at = excluded.next_at,"
            f" position = excluded.position WHERE {self.table}.position < excluded.position",
            (e.schedule_id, e.wire_name, e.wire_version, codec.encode_payload(e), next_at, position),
        )

    async def delete(self, conn: Conn, schedule_id: uuid.UUID) -> None:
        await conn.execute(f"DELETE FROM {self.table} WHERE schedule_id = %s", (schedule_id,))

    async def due(self, conn: Conn, now: datetime, limit: int = 20) -> list[Due]:
        """The schedules due by ``now``, locked for this round (another replica skips them)."""
        cur = await conn.execute(
            f"SELECT type, version, payload, position FROM {self.table} WHERE next_at <= %s"
            " ORDER BY next_at FOR UPDATE SKIP LOCKED LIMIT %s",
            (now, limit),
        )
        out = []
        for type_, version, payload, position in await cur.fetchall():
            schedule = codec.decode_payload(type_, version, bytes(payload))
            assert isinstance(schedule, ScheduleSaved)
            out.append(Due(schedule, position))
        return out

    async def advance(self, conn: Conn, schedule_id: uuid.UUID, next_at: datetime | None) -> None:
        await conn.execute(f"UPDATE {self.table} SET next_at = %s WHERE schedule_id = %s", (next_at, schedule_id))

    async def scenario(self, conn: Conn, scenario_id: uuid.UUID) -> ScenarioSaved | None:
        """The scenario's last definition (projections.ScenarioDirectory); None once deleted."""
        row = await (
            await conn.execute(
                f'SELECT type, version, payload FROM "{self.schema}".scenario_directory'
                " WHERE scenario_id = %s AND NOT deleted AND version IS NOT NULL",
                (scenario_id,),
            )
        ).fetchone()
        if row is None:
            return None
        scenario = codec.decode_payload(row[0], row[1], bytes(row[2]))
        assert isinstance(scenario, ScenarioSaved)
        return scenario

    async def next_order(self, conn: Conn) -> int:
        """Where a schedule's run queues among operators' runs (theirs queue at their log position)."""
        row = await (await conn.execute("SELECT coalesce(max(position), 0) + 1 FROM events")).fetchone()
        return int(row[0]) if row else 0
