"""Composition root of the imager service: the only place that picks implementations."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI

from dpm_imagefmt.store import DirStore
from dpm_imager import commit, gc, routes
from dpm_imager.progress import Progress
from dpm_imager.settings import ImagerSettings
from dpm_imager.state import SCHEMA, Images, Transfers, live_manifests
from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.eventlog import Conn
from dpm_runtime.service import Runtime, Service, Task, Wiring
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import ImageDeleted
from dpm_schemas.subjects import durable_name

NAME = "imager"
log = logging.getLogger(__name__)


def bootstrap(settings: ImagerSettings) -> Service:
    app = FastAPI(title="dpm imager", version="0.1.0")
    app.include_router(routes.router)

    def wire(rt: Runtime) -> Wiring:
        store = DirStore(settings.imager_root).open()
        app.state.imager = routes.Imager(
            rt=rt,
            store=store,
            progress=Progress(rt.nc, settings.imager_progress_interval),
            reserve_bytes=settings.imager_reserve_bytes,
            free_factor=settings.imager_free_factor,
        )
        collector = Collector(rt, store, settings.imager_gc_grace)
        return Wiring(
            ddl=[*directory_ddl(SCHEMA), *commit.DDL],
            projections=[Transfers(), Images()],
            consumers=[directory_consumer(NAME, SCHEMA), collector.consumer()],
            tasks=[collector.periodic(settings.imager_gc_interval)],
        )

    return Service(name=NAME, settings=settings, port=settings.imager_port, app=app, wire=wire)


class Collector:
    """Garbage collection: after every deletion (once the images read model has it), and on a timer
    for chunks whose backup never committed."""

    def __init__(self, rt: Runtime, store: DirStore, grace: float) -> None:
        self.rt = rt
        self.store = store
        self.grace = grace
        self.last: gc.Collected | None = None
        self._lock = asyncio.Lock()

    async def run(self) -> gc.Collected:
        async with self._lock:
            async with self.rt.pool.connection() as conn:
                live = await live_manifests(conn)
                await commit.forget_ended(conn)
            self.last = await asyncio.to_thread(gc.collect, self.store, live, self.grace)
            if self.last.chunks or self.last.manifests:
                log.info("gc: %d chunks (%d bytes), %d manifests removed", *vars(self.last).values())
            return self.last

    def consumer(self) -> ConsumerSpec:
        async def deleted(rec: RecordedEvent, _conn: Conn) -> None:
            await self.rt.projections["stored_images"].wait_for(rec.position)
            await self.run()

        return ConsumerSpec(durable=durable_name(NAME, "gc"), handlers={ImageDeleted: deleted})

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
