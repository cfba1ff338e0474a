"""Composition root of the imager service: the only place that picks implementations."""

from __future__ import annotations

from fastapi import FastAPI

from dpm_imagefmt.store import DirStore
from dpm_imager import handlers, routes
from dpm_imager.adapters import space, vouchers
from dpm_imager.adapters.collector import Collector
from dpm_imager.adapters.dataplane import Imager
from dpm_imager.adapters.progress import Progress
from dpm_imager.projections import SCHEMA, Images, Transfers
from dpm_imager.settings import ImagerSettings
from dpm_runtime.directory import MachineDirectory
from dpm_runtime.service import Runtime, Service, Wiring

NAME = "imager"


def bootstrap(settings: ImagerSettings) -> Service:
    app = FastAPI(title="dpm imager", version="0.1.0")
    app.include_router(routes.router)

    def wire(rt: Runtime) -> Wiring:
        store = DirStore(settings.imager_root).open()
        app.state.imager = Imager(
            rt=rt,
            store=store,
            progress=Progress(rt.nc, settings.imager_progress_interval),
            reserve_bytes=settings.imager_reserve_bytes,
            free_factor=settings.imager_free_factor,
        )

        async def images_caught_up() -> bool:
            return await rt.projections["stored_images"].wait_for(await rt.eventlog.head(), timeout=30)

        imager: Imager = app.state.imager
        collector = app.state.collector = Collector(
            rt.pool, store, settings.imager_gc_grace, images_caught_up, imager.short_of_space
        )
        return Wiring(
            ddl=[f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}", *vouchers.DDL],
            projections=[MachineDirectory(SCHEMA), Transfers(), Images()],
            consumers=[
                *handlers.router.bind(
                    images=rt.catch_up("stored_images"),
                    transfers=rt.catch_up("transfers"),
                    collector=collector,
                    eventlog=rt.eventlog,
                    forget=app.state.imager.forget,
                ),
            ],
            tasks=[
                collector.periodic(settings.imager_gc_interval),
                space.reporter(imager.free_bytes, imager.free_factor, rt.eventlog, settings.imager_space_interval),
            ],
        )

    return Service(name=NAME, settings=settings, port=settings.imager_port, app=app, wire=wire)
