"""Garbage collection of the chunk store: after every deletion (once the images read model has it),
and on a timer for chunks whose backup never committed."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from psycopg_pool import AsyncConnectionPool

from dpm_imagefmt.store import DirStore
from dpm_imager.adapters import gc, vouchers
from dpm_imager.adapters.readmodel import live_manifests
from dpm_runtime.eventlog import Conn
from dpm_runtime.service import Runtime, Task

log = logging.getLogger(__name__)


class Collector:
    """One collection at a time per process: the images read model says which manifests are live,
    ``gc.collect`` removes the rest (after ``grace`` seconds, so a backup in flight keeps its chunks)."""

    def __init__(self, pool: AsyncConnectionPool[Conn], store: DirStore, grace: float) -> None:
        self.pool = pool
        self.store = store
        self.grace = grace
        self.last: gc.Collected | None = None
        self._lock = asyncio.Lock()

    async def run(self) -> gc.Collected:
        async with self._lock:
            async with self.pool.connection() as conn:
                live = await live_manifests(conn)
                await vouchers.forget_ended(conn)
            self.last = await asyncio.to_thread(gc.collect, self.store, live, self.grace)
            if self.last.chunks or self.last.manifests:
                log.info("gc: %d chunks (%d bytes), %d manifests removed", *vars(self.last).values())
            return self.last

    def periodic(self, interval: float) -> Task:
        async def loop(rt: Runtime) -> None:
            while not rt.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rt.stop.wait(), interval)
                    return
                try:
                    await self.run()
                except Exception:
                    log.exception("gc failed; next try in %.0f s", interval)

        return loop
