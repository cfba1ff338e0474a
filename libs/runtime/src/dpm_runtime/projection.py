"""Read models built from the log: a runner that keeps them live, and a rebuild that replays from 0.

A projection reads the log directly (ordered, same database) rather than through NATS: its rows and
its checkpoint are written in one transaction, so it resumes exactly where it stopped. The
checkpoint row is locked ``FOR UPDATE`` per batch, so replicas of a service never apply a batch twice.

Rebuild replays every relevant event into fresh tables in a staging schema, then -- holding the
checkpoint lock so the live runner pauses -- catches up to the head and swaps the tables in.

Both quarantine an event they cannot decode or apply (``dpm_runtime.quarantine``) and keep going:
one poison event never stops the events after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from dpm_runtime import quarantine
from dpm_runtime.eventlog import Conn, EventLog, select_rows
from dpm_schemas import E
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.errors import DpmError

log = logging.getLogger(__name__)

_REBUILD_LOCK = 7291003
QUARANTINE_RECOUNT = 15.0  # seconds between recounts of the quarantine for /statusz


class Projection(Protocol):
    """What a read model declares; ``apply`` must be deterministic given the rows it reads."""

    @property
    def name(self) -> str:
        """e.g. "machines"; the checkpoint is "projection:<name>"."""
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
    return f"projection:{projection.name}"


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


class ProjectionRunner:
    def __init__(
        self,
        projection: Projection,
        *,
        pool: AsyncConnectionPool[Conn],
        eventlog: EventLog,
        batch_size: int = 1000,
        idle_poll: float = 0.2,
        quarantine_poll: float = QUARANTINE_RECOUNT,
    ) -> None:
        self.projection = projection
        self._pool = pool
        self._log = eventlog
        self._batch_size = batch_size
        self._idle_poll = idle_poll
        self._quarantine_poll = quarantine_poll
        self.position = 0
        self.quarantined = 0  # entries of this projection awaiting an admin (shown in /statusz)

    async def setup(self) -> None:
        p = self.projection
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{p.schema}"'.encode())
            await conn.execute(p.ddl(p.schema).encode())
            await conn.execute(
                "INSERT INTO dpm_checkpoints (name, position) VALUES (%s, 0) ON CONFLICT DO NOTHING",
                (checkpoint_name(p),),
            )
        await self.refresh_quarantined()

    async def refresh_quarantined(self) -> None:
        async with self._pool.connection() as conn:
            self.quarantined = await quarantine.count(conn, self.projection.name)

    async def serve_retries(self) -> None:
        """Carry out the retries an admin asked for through the api (which may not own this projection)."""
        async with self._pool.connection() as conn:
            positions = await quarantine.retry_requests(conn, self.projection.name)
        for position in positions:
            try:
                await retry_quarantined(self.projection, pool=self._pool, position=position)
                log.info("projection %s: quarantined position %d applied on retry", self.projection.name, position)
            except DpmError as exc:  # still failing: back in the quarantine with the new error
                log.warning("projection %s: retry of position %d: %s", self.projection.name, position, exc.message)

    async def run(self, stop: asyncio.Event) -> None:
        counted = time.monotonic()
        while not stop.is_set():
            try:
                full = await self.step()
                if time.monotonic() - counted > self._quarantine_poll:  # another replica's or an admin's change
                    await self.serve_retries()
                    await self.refresh_quarantined()
                    counted = time.monotonic()
            except Exception as exc:
                log.warning("projection %s: %r; retrying", self.projection.name, exc)
                full = False
                await asyncio.sleep(1.0)
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._idle_poll)

    async def step(self) -> bool:
        """Apply one batch; True when the batch was full (more may be waiting)."""
        p = self.projection
        async with self._pool.connection() as conn, conn.transaction():
            position = await _lock_checkpoint(conn, p)
            head = await self._log.head(conn)
            rows = await _fetch(conn, p, position, self._batch_size)
            rows = [r for r in rows if r[0] <= head]
            full = len(rows) == self._batch_size
            poison = await quarantine.apply_guarded(conn, p, p.schema, rows) if rows else []
            if poison:
                await quarantine.record(conn, p.name, poison)
            new_position = rows[-1][0] if full else head
            if new_position != position:
                await conn.execute(
                    "UPDATE dpm_checkpoints SET position = %s, updated_at = now() WHERE name = %s",
                    (new_position, checkpoint_name(p)),
                )
        self.position = new_position
        if poison:
            await self.refresh_quarantined()
        return full

    async def wait_for(self, position: int, timeout: float = 10.0) -> bool:
        """Wait until the projection has seen ``position`` (read-your-writes for the API)."""
        deadline = time.monotonic() + timeout
        while True:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT position FROM dpm_checkpoints WHERE name = %s", (checkpoint_name(self.projection),)
                )
                row = await cur.fetchone()
            if row and row[0] >= position:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)


async def _lock_checkpoint(conn: Conn, projection: Projection) -> int:
    cur = await conn.execute(
        "SELECT position FROM dpm_checkpoints WHERE name = %s FOR UPDATE", (checkpoint_name(projection),)
    )
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError(f"projection {projection.name} is not set up (no checkpoint row)")
    return int(row[0])


async def rebuild(
    projection: Projection, *, pool: AsyncConnectionPool[Conn], eventlog: EventLog, batch_size: int = 50000
) -> RebuildResult:
    """Replay the log from position 0 into fresh tables and swap them in; the live runner pauses
    only for the final catch-up and swap."""
    p = projection
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_REBUILD_LOCK, p.name))
        got = await cur.fetchone()
        if not (got and got[0]):
            raise E.REBUILD_RUNNING(name=p.name)
        try:
            with _gc_paused():
                return await _rebuild(p, conn, eventlog, batch_size, pool)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_REBUILD_LOCK, p.name))


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


async def _fetch(conn: Conn, p: Projection, after: int, limit: int) -> list[TupleRow]:
    return await select_rows(conn, after=after, limit=limit, types=p.event_types, metadata=False)


async def _rebuild(
    p: Projection, conn: Conn, eventlog: EventLog, batch_size: int, pool: AsyncConnectionPool[Conn]
) -> RebuildResult:
    staging = f"{p.schema}_rebuild"
    started = time.perf_counter()
    count = 0
    async with conn.transaction():
        await conn.execute(f'DROP SCHEMA IF EXISTS "{staging}" CASCADE'.encode())
        await conn.execute(f'CREATE SCHEMA "{staging}"'.encode())
        await conn.execute(p.ddl(staging).encode())
    # Bulk phase, no lock on the live projection: batch k+1 is fetched on a second connection (the
    # server works on the other core) while batch k is decoded and applied.
    position = 0
    poison: list[quarantine.Poison] = []
    async with pool.connection() as reader:
        fetch = asyncio.create_task(_fetch(reader, p, position, batch_size))
        while rows := await fetch:
            fetch = asyncio.create_task(_fetch(reader, p, rows[-1][0], batch_size))
            async with conn.transaction():
                poison += await quarantine.apply_guarded(conn, p, staging, rows)
            position = rows[-1][0]
            count += len(rows)
    async with conn.transaction():  # swap phase: the live runner waits on the checkpoint lock
        await _lock_checkpoint(conn, p)
        head = await eventlog.head(conn)
        while rows := await _fetch(conn, p, position, batch_size):
            poison += await quarantine.apply_guarded(conn, p, staging, rows)
            position = rows[-1][0]
            count += len(rows)
        await quarantine.replace_after_rebuild(conn, p.name, poison)
        for table in p.tables:
            await conn.execute(f'DROP TABLE IF EXISTS "{p.schema}"."{table}"'.encode())
            await conn.execute(f'ALTER TABLE "{staging}"."{table}" SET SCHEMA "{p.schema}"'.encode())
        await conn.execute(f'DROP SCHEMA "{staging}" CASCADE'.encode())
        await conn.execute(
            "UPDATE dpm_checkpoints SET position = %s, updated_at = now() WHERE name = %s",
            (max(head, position), checkpoint_name(p)),
        )
    result = RebuildResult(
        name=p.name,
        events=count,
        position=max(head, position),
        seconds=time.perf_counter() - started,
        quarantined=len(poison),
    )
    log.info("projection %s rebuilt: %d events in %.2f s", p.name, count, result.seconds)
    return result


async def retry_quarantined(projection: Projection, *, pool: AsyncConnectionPool[Conn], position: int) -> None:
    """Apply a quarantined event again, to the live tables, holding the checkpoint lock (the live
    runner waits). It leaves the quarantine when it applies; else it stays, with the new error, and
    ``DPM-E171`` says why. The event is applied after the events that followed it: an operator retries
    once the cause is fixed, and projections are written to tolerate that (upserts by key)."""
    p = projection
    async with pool.connection() as conn, conn.transaction():
        await _lock_checkpoint(conn, p)
        item = await quarantine.entry(conn, p.name, position, lock=True)
        rows = await select_rows(conn, after=position - 1, limit=1, metadata=False)
        poison = await quarantine.apply_guarded(conn, p, p.schema, rows)
        if not poison:
            await quarantine.resolve(conn, p.name, position)
            return
        await quarantine.note_failure(conn, p.name, position, poison[0].error)
    raise E.QUARANTINE_RETRY_FAILED(projection=p.name, position=position, type=item.type, error=poison[0].error)


async def skip_quarantined(name: str, *, pool: AsyncConnectionPool[Conn], position: int) -> None:
    """Leave the read model ``name`` without the event for good (kept in the quarantine table as
    skipped). By name: the api skips for every service, under that projection's checkpoint lock."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT 1 FROM dpm_checkpoints WHERE name = %s FOR UPDATE", (f"projection:{name}",))
        if await cur.fetchone() is None:
            raise E.QUARANTINE_NOT_FOUND(projection=name, position=position)
        await quarantine.skip(conn, name, position)
