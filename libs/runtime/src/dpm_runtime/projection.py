"""Read models built from the log: a runner that keeps them live (rebuilds: ``dpm_runtime.rebuild``).

A projection reads the log directly (ordered, same database) rather than through NATS: its rows and
its checkpoint are written in one transaction, so it resumes exactly where it stopped. The
checkpoint row is locked ``FOR UPDATE`` per batch, so replicas of a service never apply a batch twice.
The runner wakes on the log's NOTIFY (``dpm_runtime.wake``) and polls slowly in case one was lost.

It quarantines an event it cannot decode or apply (``dpm_runtime.quarantine``) and keeps going:
one poison event never stops the events after it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from psycopg_pool import AsyncConnectionPool

from dpm_runtime import quarantine, registry
from dpm_runtime.checkpoint import applied_position
from dpm_runtime.checkpoint import checkpoint_key as checkpoint_key
from dpm_runtime.checkpoint import require_position as require_position
from dpm_runtime.eventlog import Conn, EventLog
from dpm_runtime.readmodel import Projection as Projection
from dpm_runtime.readmodel import checkpoint_name as checkpoint_name
from dpm_runtime.readmodel import fetch, lock_checkpoint, set_checkpoint
from dpm_runtime.rebuild import RebuildResult as RebuildResult
from dpm_runtime.rebuild import rebuild as rebuild
from dpm_runtime.rebuild import retry_quarantined, skip_quarantined
from dpm_runtime.wake import idle
from dpm_schemas.errors import DpmError

log = logging.getLogger(__name__)

__all__ = [
    "Projection",
    "ProjectionRunner",
    "RebuildResult",
    "checkpoint_key",
    "checkpoint_name",
    "rebuild",
    "require_position",
    "retry_quarantined",
    "skip_quarantined",
]

QUARANTINE_RECOUNT = 15.0  # seconds between recounts of the quarantine for /statusz
RECHECK = 0.25  # wait_for re-reads the checkpoint this often when no local progress wakes it
COALESCE = 0.02  # at most one step per this many seconds while appends keep waking the runner


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
        wake: asyncio.Event | None = None,
    ) -> None:
        """``wake`` is set on every append (``Waker.subscribe``); with it, ``idle_poll`` is only the
        fallback for a lost notification and may be seconds."""
        self.projection = projection
        self._pool = pool
        self._log = eventlog
        self._batch_size = batch_size
        self._idle_poll = idle_poll
        self._quarantine_poll = quarantine_poll
        self._wake = wake
        self._progress = asyncio.Event()  # set (and replaced) after every step: wakes ``wait_for``
        self._stepped = 0.0  # monotonic time the last step ended
        self.position = 0
        self.quarantined = 0  # entries of this projection awaiting an admin (shown in /statusz)

    async def setup(self) -> None:
        """Create the schema, tables and checkpoint; run by a service (``registry.Qualified``), record
        the projection in ``dpm_projections`` so the api can route rebuilds of it to that service."""
        p = self.projection
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{p.schema}"'.encode())
            await conn.execute(p.ddl(p.schema).encode())
            if isinstance(p, registry.Qualified):
                await registry.register(conn, p)
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
            if self._wake is not None:
                self._wake.clear()  # before the step: an append committed during it wakes the next
            try:
                full = await self.step()
                if time.monotonic() - counted > self._quarantine_poll:  # another replica's or an admin's change
                    await self.serve_retries()
                    await self.refresh_quarantined()
                    counted = time.monotonic()
            except Exception as exc:
                log.warning("projection %s: %r; retrying", self.projection.name, exc)
                full = False
                await idle(1.0, stop)
            if not full:
                await self._pause(stop)

    async def _pause(self, stop: asyncio.Event) -> None:
        """Until the next append (or the fallback poll). Every append wakes every runner: a wake-up
        within ``COALESCE`` of the last step waits out the rest, so appends under load make batches,
        while a lone append is applied at once."""
        if self._wake is None:
            await idle(self._idle_poll, stop)
            return
        await idle(self._idle_poll, stop, self._wake)
        if (rest := COALESCE - (time.monotonic() - self._stepped)) > 0:
            await idle(rest, stop)

    async def step(self) -> bool:
        """Apply one batch; True when the batch was full (more may be waiting)."""
        p = self.projection
        async with self._pool.connection() as conn, conn.transaction():
            position = await lock_checkpoint(conn, p)
            # head first, then the rows, each its own READ COMMITTED snapshot: rows committed between
            # the two are cut off at head, so the checkpoint never moves past what was read
            head = await self._log.head(conn)
            rows = [r for r in await fetch(conn, p, position, self._batch_size) if r[0] <= head]
            full = len(rows) == self._batch_size
            poison = await quarantine.apply_guarded(conn, p, p.schema, rows) if rows else []
            if poison:
                await quarantine.record(conn, p.name, poison)
            new_position = rows[-1][0] if full else head
            if new_position != position:
                await set_checkpoint(conn, p, new_position)
        self.position, self._stepped = new_position, time.monotonic()
        self._progress.set()
        self._progress = asyncio.Event()
        if poison:
            await self.refresh_quarantined()
        return full

    async def wait_for(self, position: int, timeout: float = 10.0) -> bool:
        """Wait until the projection has seen ``position`` (read-your-writes for the API). Woken by this
        process's runner after each batch; the checkpoint is the authority (another replica's runner
        may have applied it), re-read after each wake-up."""
        deadline = time.monotonic() + timeout
        while True:
            progress = self._progress  # taken before the read: a step finishing after it wakes us
            if self.position >= position:
                return True
            async with self._pool.connection() as conn:
                reached = await applied_position(conn, self.projection.name)
            if reached is not None and reached >= position:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await idle(min(left, RECHECK), progress)
