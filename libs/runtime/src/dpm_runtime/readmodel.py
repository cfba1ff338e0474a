"""What a read model declares, and the checkpoint SQL that the live runner and a rebuild share.

The checkpoint row is locked ``FOR UPDATE`` per batch, so replicas of a service never apply a batch
twice, and a rebuild's swap (which takes the same lock) pauses the live runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from psycopg.rows import TupleRow

from dpm_runtime.checkpoint import checkpoint_key
from dpm_runtime.eventlog import Conn, select_rows
from dpm_schemas.envelope import RecordedEvent


class Projection(Protocol):
    """What a read model declares; ``apply`` must be deterministic given the rows it reads."""

    @property
    def name(self) -> str:
        """e.g. "machines"; run by a service it is "<service>.machines", checkpoint "projection:<that>"."""
        ...

    @property
    def schema(self) -> str:
        """PostgreSQL schema owning the tables, e.g. "api"."""
        ...

    @property
    def tables(self) -> Sequence[str]:
        """Tables swapped in on rebuild."""
        ...

    @property
    def event_types(self) -> Sequence[str]:
        """Wire names the projection reads."""
        ...

    def ddl(self, schema: str) -> str:
        """CREATE TABLE IF NOT EXISTS statements for every table, in ``schema``."""
        ...

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        """Fold ``events`` (in position order) into the tables in ``schema``."""
        ...


def checkpoint_name(projection: Projection) -> str:
    return checkpoint_key(projection.name)


async def lock_checkpoint(conn: Conn, projection: Projection) -> int:
    cur = await conn.execute(
        "SELECT position FROM dpm_checkpoints WHERE name = %s FOR UPDATE", (checkpoint_name(projection),)
    )
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError(f"projection {projection.name} is not set up (no checkpoint row)")
    return int(row[0])


async def set_checkpoint(conn: Conn, projection: Projection, position: int) -> None:
    await conn.execute(
        "UPDATE dpm_checkpoints SET position = %s, updated_at = now() WHERE name = %s",
        (position, checkpoint_name(projection)),
    )


def reads_metadata(p: Projection) -> bool:
    """Whether ``p`` reads ``rec.metadata`` (e.g. the actor). Most projections do not, so the column is
    skipped for them (a rebuild reads every row); one that does declares ``reads_metadata = True``, an
    optional attribute so that every other projection stays as it is. A wrapper that runs a projection
    under another name (``registry.Qualified``, its ``inner``) answers for the one it wraps."""
    seen: object = p
    while not hasattr(seen, "reads_metadata") and hasattr(seen, "inner"):
        seen = seen.inner
    return bool(getattr(seen, "reads_metadata", False))


async def fetch(conn: Conn, p: Projection, after: int, limit: int) -> list[TupleRow]:
    return await select_rows(conn, after=after, limit=limit, types=p.event_types, metadata=reads_metadata(p))
