"""Every service's projections by full name, "<service>.<projection>" (e.g. "scheduler.presence").

Two services may give a read model the same short name; the full name keys its checkpoint
("projection:<full name>"), its quarantine entries and its row in ``dpm_projections``, which each
runner's setup upserts so the api can list, and route rebuilds to, read models whose code lives in
another service. Within a service the short name still finds the runner (``Runtime.projections``).

Checkpoints and quarantine entries written before full names ("projection:<name>") were renamed by
the migration sql/0003_projection_registry.sql, so an existing database goes on from its checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dpm_runtime.checkpoint import PREFIX
from dpm_runtime.eventlog import Conn
from dpm_runtime.readmodel import Projection
from dpm_schemas.envelope import RecordedEvent


@dataclass(frozen=True)
class Qualified:
    """A projection as its service runs it: the same read model, named "<service>.<name>"."""

    service: str
    inner: Projection

    @property
    def name(self) -> str:
        return f"{self.service}.{self.inner.name}"

    @property
    def schema(self) -> str:
        return self.inner.schema

    @property
    def tables(self) -> Sequence[str]:
        return self.inner.tables

    @property
    def event_types(self) -> Sequence[str]:
        return self.inner.event_types

    def ddl(self, schema: str) -> str:
        return self.inner.ddl(schema)

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        await self.inner.apply(conn, schema, events)


@dataclass(frozen=True)
class Registered:
    """A row of ``GET /admin/projections``: where a service's read model has got to."""

    name: str
    service: str
    position: int
    quarantined: int


async def register(conn: Conn, p: Qualified) -> None:
    """Record (or refresh) what the projection is: its service, schema, tables and the events it reads."""
    await conn.execute(
        "INSERT INTO dpm_projections (name, service, schema, tables, event_types) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET service = excluded.service, schema = excluded.schema,"
        " tables = excluded.tables, event_types = excluded.event_types, registered_at = now()",
        (p.name, p.service, p.schema, list(p.tables), list(p.event_types)),
    )


_LISTING = (
    "SELECT p.name, p.service, coalesce(c.position, 0),"
    " (SELECT count(*) FROM dpm_quarantine q WHERE q.projection = p.name AND q.status <> 'skipped')"
    f" FROM dpm_projections p LEFT JOIN dpm_checkpoints c ON c.name = '{PREFIX}' || p.name"
)


async def listing(conn: Conn) -> list[Registered]:
    cur = await conn.execute(f"{_LISTING} ORDER BY p.name")
    return [Registered(*row) for row in await cur.fetchall()]


async def lookup(conn: Conn, full_name: str) -> Registered | None:
    cur = await conn.execute(f"{_LISTING} WHERE p.name = %s", (full_name,))
    row = await cur.fetchone()
    return Registered(*row) if row else None
