"""The updater's read model of package sources (a projection of the log, so a restarted or second
updater knows every source): their settings (SourceSaved), when each last synced, and what earlier
syncs offered -- the snapshot the next sync compares against, so a package is offered once per
(name, version, architecture, content) however often the repository is synced."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import SourceRemoved, SourceSaved, SourceSynced
from dpm_updater.projections import SCHEMA

OfferedRow = tuple[str, str, str, str, int, str]  # package, version, architecture, sha256, size, filename


class Sources:
    name = "source_syncs"
    schema = SCHEMA
    tables = ("sources", "source_offered")
    event_types = (SourceSaved.wire_name, SourceRemoved.wire_name, SourceSynced.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".sources (source_id uuid PRIMARY KEY, name text NOT NULL,'
            " definition jsonb NOT NULL, last_at timestamptz, last_ok boolean);"
            f'CREATE TABLE IF NOT EXISTS "{schema}".source_offered (source_id uuid NOT NULL, package text NOT NULL,'
            " version text NOT NULL, architecture text NOT NULL, sha256 text NOT NULL, size bigint NOT NULL,"
            " filename text NOT NULL, PRIMARY KEY (source_id, package, version, architecture));"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            if isinstance(e, SourceSaved):
                await conn.execute(
                    f'INSERT INTO "{schema}".sources (source_id, name, definition) VALUES (%s, %s, %s)'
                    " ON CONFLICT (source_id) DO UPDATE SET name = excluded.name, definition = excluded.definition",
                    (e.source_id, e.name, e.model_dump_json()),
                )
            elif isinstance(e, SourceRemoved):
                for table in ("source_offered", "sources"):
                    await conn.execute(f'DELETE FROM "{schema}".{table} WHERE source_id = %s', (e.source_id,))
            elif isinstance(e, SourceSynced):
                await _synced(conn, schema, e)


async def _synced(conn: Conn, schema: str, e: SourceSynced) -> None:
    await conn.execute(
        f'UPDATE "{schema}".sources SET last_at = %s, last_ok = %s WHERE source_id = %s', (e.at, e.ok, e.source_id)
    )
    for o in e.offered:
        await conn.execute(
            f'INSERT INTO "{schema}".source_offered (source_id, package, version, architecture, sha256, size,'
            f' filename) SELECT %s, %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM "{schema}".sources'
            " WHERE source_id = %s) ON CONFLICT (source_id, package, version, architecture)"
            " DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, filename = excluded.filename",
            (e.source_id, o.name, o.version, o.architecture, o.sha256, o.size, o.filename, e.source_id),
        )


async def source_of(conn: Conn, source_id: uuid.UUID) -> SourceSaved | None:
    row = await (
        await conn.execute(f"SELECT definition FROM {SCHEMA}.sources WHERE source_id = %s", (source_id,))
    ).fetchone()
    return SourceSaved.model_validate(row[0]) if row else None


async def offered_rows(conn: Conn, source_id: uuid.UUID) -> list[OfferedRow]:
    rows = await (
        await conn.execute(
            f"SELECT package, version, architecture, sha256, size, filename FROM {SCHEMA}.source_offered"
            " WHERE source_id = %s",
            (source_id,),
        )
    ).fetchall()
    return [(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]


async def schedule(conn: Conn) -> list[tuple[uuid.UUID, int, datetime | None]]:
    """Every source with its interval and last sync (the timer decides which are due)."""
    rows = await (
        await conn.execute(
            f"SELECT source_id, (definition->>'interval_minutes')::int, last_at FROM {SCHEMA}.sources"
            " ORDER BY source_id"
        )
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]
