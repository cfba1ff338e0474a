"""Rebuild a read model from position 0, and an admin's retry or skip of a quarantined event.

A rebuild replays every relevant event into fresh tables in a staging schema, then -- holding the
checkpoint lock so the live runner pauses -- catches up to the head and swaps the tables in. A
session advisory lock per projection refuses a second concurrent rebuild (DPM-E021), in any replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from dpm_runtime import quarantine
from dpm_runtime.checkpoint import checkpoint_key
from dpm_runtime.eventlog import Conn, EventLog, select_rows
from dpm_runtime.readmodel import Projection, fetch, lock_checkpoint, reads_metadata, set_checkpoint
from dpm_schemas import E

log = logging.getLogger(__name__)

_REBUILD_LOCK = 7291003


@dataclass(frozen=True)
class RebuildResult:
    name: str
    events: int
    position: int
    seconds: float
    quarantined: int = 0  # events set aside (``dpm_quarantine``) instead of failing the rebuild

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@contextlib.asynccontextmanager
async def rebuild_lock(conn: Conn, name: str) -> AsyncIterator[None]:
    """Hold the rebuild lock of projection ``name`` on ``conn`` (a session lock), or raise DPM-E021."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_REBUILD_LOCK, name))
    got = await cur.fetchone()
    if not (got and got[0]):
        raise E.REBUILD_RUNNING(name=name)
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_REBUILD_LOCK, name))


async def rebuild(
    projection: Projection, *, pool: AsyncConnectionPool[Conn], eventlog: EventLog, batch_size: int = 50000
) -> RebuildResult:
    """Replay the log from position 0 into fresh tables and swap them in; the live runner pauses
    only for the final catch-up and swap."""
    async with pool.connection() as conn, rebuild_lock(conn, projection.name):
        return await rebuild_locked(projection, conn, pool=pool, eventlog=eventlog, batch_size=batch_size)


async def rebuild_locked(
    p: Projection, conn: Conn, *, pool: AsyncConnectionPool[Conn], eventlog: EventLog, batch_size: int = 50000
) -> RebuildResult:
    """``rebuild`` on ``conn``, which already holds the projection's ``rebuild_lock``."""
    with _gc_paused():
        started = time.perf_counter()
        staging = staging_schema(p)
        async with conn.transaction():
            await conn.execute(f'DROP SCHEMA IF EXISTS "{staging}" CASCADE'.encode())
            await conn.execute(f'CREATE SCHEMA "{staging}"'.encode())
            await conn.execute(p.ddl(staging).encode())
        progress = _Progress()
        await _bulk(p, conn, pool, staging, batch_size, progress)
        head = await _swap(p, conn, eventlog, staging, batch_size, progress)
    result = RebuildResult(
        name=p.name,
        events=progress.count,
        position=max(head, progress.position),
        seconds=time.perf_counter() - started,
        quarantined=len(progress.poison),
    )
    log.info("projection %s rebuilt: %d events in %.2f s", p.name, result.events, result.seconds)
    return result


def staging_schema(p: Projection) -> str:
    """Where the rebuild of ``p`` builds its tables: one per projection, since two projections of one
    schema (api.machines, api.groups) may be rebuilt at once -- by the api and by a request's worker."""
    return f"{p.schema}_rebuild_{p.name.rsplit('.', 1)[-1]}"[:63]


@dataclass
class _Progress:
    position: int = 0
    count: int = 0
    poison: list[quarantine.Poison] = field(default_factory=list)

    def took(self, rows: list[TupleRow], poison: list[quarantine.Poison]) -> None:
        self.position = rows[-1][0]
        self.count += len(rows)
        self.poison += poison


async def _bulk(
    p: Projection, conn: Conn, pool: AsyncConnectionPool[Conn], staging: str, batch_size: int, progress: _Progress
) -> None:
    """No lock on the live projection: batch k+1 is fetched on a second connection (the server works
    on the other core) while batch k is decoded and applied."""
    async with pool.connection() as reader:
        pending = asyncio.create_task(fetch(reader, p, progress.position, batch_size))
        while rows := await pending:
            pending = asyncio.create_task(fetch(reader, p, rows[-1][0], batch_size))
            async with conn.transaction():
                progress.took(rows, await quarantine.apply_guarded(conn, p, staging, rows))


async def _swap(
    p: Projection, conn: Conn, eventlog: EventLog, staging: str, batch_size: int, progress: _Progress
) -> int:
    """Catch up to the head and swap the tables in, while the live runner waits on the checkpoint lock."""
    async with conn.transaction():
        await lock_checkpoint(conn, p)
        head = await eventlog.head(conn)
        while rows := await fetch(conn, p, progress.position, batch_size):
            progress.took(rows, await quarantine.apply_guarded(conn, p, staging, rows))
        await quarantine.replace_after_rebuild(conn, p.name, progress.poison)
        for table in p.tables:
            await conn.execute(f'DROP TABLE IF EXISTS "{p.schema}"."{table}"'.encode())
            await conn.execute(f'ALTER TABLE "{staging}"."{table}" SET SCHEMA "{p.schema}"'.encode())
        await conn.execute(f'DROP SCHEMA "{staging}" CASCADE'.encode())
        await set_checkpoint(conn, p, max(head, progress.position))
    return head


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a rebuild churns through millions of short-lived
    objects: with the decode cache holding tens of thousands of live models, every full collection
    walked them all, and collections ate a third of the rebuild (bench: 80k -> 117k events/s).
    Memory stays bounded by one batch; what cycles accumulate are collected when it ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


async def retry_quarantined(projection: Projection, *, pool: AsyncConnectionPool[Conn], position: int) -> None:
    """Apply a quarantined event again, to the live tables, holding the checkpoint lock (the live
    runner waits). It leaves the quarantine when it applies; else it stays, with the new error, and
    ``DPM-E171`` says why. The event is applied after the events that followed it: an operator retries
    once the cause is fixed, and projections are written to tolerate that (upserts by key)."""
    p = projection
    async with pool.connection() as conn, conn.transaction():
        await lock_checkpoint(conn, p)
        item = await quarantine.entry(conn, p.name, position, lock=True)
        rows = await select_rows(conn, after=position - 1, limit=1, metadata=reads_metadata(p))
        poison = await quarantine.apply_guarded(conn, p, p.schema, rows)
        if not poison:
            await quarantine.resolve(conn, p.name, position)
            return
        await quarantine.note_failure(conn, p.name, position, poison[0].error)
    raise E.QUARANTINE_RETRY_FAILED(projection=p.name, position=position, type=item.type, error=poison[0].error)


async def skip_quarantined(name: str, *, pool: AsyncConnectionPool[Conn], position: int) -> None:
    """Leave the read model ``name`` (its full name) without the event for good (kept in the quarantine
    table as skipped). By name: the api skips for every service, under that projection's checkpoint lock."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT 1 FROM dpm_checkpoints WHERE name = %s FOR UPDATE", (checkpoint_key(name),))
        if await cur.fetchone() is None:
            raise E.QUARANTINE_NOT_FOUND(projection=name, position=position)
        await quarantine.skip(conn, name, position)
