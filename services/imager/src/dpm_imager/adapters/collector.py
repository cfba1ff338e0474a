"""Garbage collection of the chunk store: after every deletion and every aborted backup (once the
read models have them), at start-up, and on a timer for chunks whose backup never ended.

What a run may remove is read in an order that keeps every committed image whole: first the
chunks ended backups leave and those open backups hold (vouchers, read with the transfers read
model), then -- once the images read model has caught up with the log -- the live manifests. A
backup that committed meanwhile is therefore either still held or already live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

from dpm_imagefmt.store import DirStore
from dpm_imager.adapters import gc, vouchers
from dpm_imager.adapters.readmodel import live_manifests
from dpm_runtime.eventlog import Conn
from dpm_runtime.service import Runtime, Task

log = logging.getLogger(__name__)

CaughtUp = Callable[[], Awaitable[bool]]  # the images read model has applied the log's head


class Collector:
    """One collection at a time per process; requests while one waits to start share it."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        store: DirStore,
        grace: float,
        caught_up: CaughtUp,
        short_of_space: Callable[[], bool],
    ) -> None:
        self.pool = pool
        self.store = store
        self.grace = grace
        self.caught_up = caught_up
        self.short_of_space = short_of_space
        self.last: gc.Collected | None = None
        self._lock = asyncio.Lock()
        self._next: asyncio.Future[gc.Collected | None] | None = None
        self._force = False

    async def run(self, *, force: bool = False) -> gc.Collected | None:
        """A collection that starts after this call (an abort or deletion just now is seen); one
        already waiting for the lock is joined rather than queued again. Aborted backups' chunks
        are kept for ``grace`` like any other (a resume reuses them) unless ``force`` (an operator's
        ``dpm images gc``) or a backup was refused for space meanwhile (DPM-E159): then they go now.
        None: not run (the images read model did not catch up, so what is live is not known)."""
        self._force |= force
        if self._next is None or self._next.done():
            self._next = asyncio.ensure_future(self._queued())
        return await asyncio.shield(self._next)

    async def _queued(self) -> gc.Collected | None:
        async with self._lock:
            self._next = None  # this one has started: a later request needs a later run
            urgent, self._force = self._force, False
            return await self._collect(urgent or self.short_of_space())

    async def _collect(self, urgent: bool) -> gc.Collected | None:
        async with self.pool.connection() as conn:  # ended first: an abort after this read is seen next run
            ended, doomed = await vouchers.ended(conn, grace=None if urgent else self.grace)
            held = await vouchers.held(conn)
        if not urgent:
            doomed = set()  # an aborted backup's chunks are kept for a resume until the grace period ends
        if not await self.caught_up():
            log.warning("gc skipped: the images read model is behind the log")
            return None
        async with self.pool.connection() as conn:
            live = await live_manifests(conn)
        self.last = await asyncio.to_thread(gc.collect, self.store, live, self.grace, held=held, doomed=doomed)
        async with self.pool.connection() as conn:
            await vouchers.forget_all(conn, ended)
        if any(vars(self.last).values()):
            log.info("gc: %d chunks (%d bytes), %d manifests, %d temporary files removed", *vars(self.last).values())
        return self.last

    def periodic(self, interval: float) -> Task:
        """A collection soon after start-up (temporary files a crash left, aborts missed while down),
        then one every ``interval`` seconds."""

        async def loop(rt: Runtime) -> None:
            delay = min(interval, 5.0)
            while not rt.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rt.stop.wait(), delay)
                    return
                delay = interval
                try:
                    await self.run()
                except Exception:
                    log.exception("gc failed; next try in %.0f s", interval)

        return loop
