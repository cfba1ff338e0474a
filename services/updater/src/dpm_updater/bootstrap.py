"""Composition root of the updater service: the only place that picks implementations."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from dpm_runtime.catalog import Inventories, PackageCatalog
from dpm_runtime.directory import MachineDirectory, Presence
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_schemas import DpmError
from dpm_updater import auto, handlers, routes
from dpm_updater.adapters.content import ContentStore
from dpm_updater.deliverer import Deliverer
from dpm_updater.downloads import Downloads
from dpm_updater.projections import SCHEMA, AutoUpdateTimes, Deliveries, Uploads
from dpm_updater.settings import UpdaterSettings
from dpm_updater.uploads import Receiver

NAME = "updater"


def now() -> datetime:
    return datetime.now(UTC)


def bootstrap(settings: UpdaterSettings) -> Service:
    app = FastAPI(title="dpm updater", version="0.1.0")
    app.include_router(routes.router)
    try:
        server: str | DpmError = settings.agent_url()
    except DpmError as unknown:  # uploads work without it; each remote-update step fails with DPM-E283
        server = unknown

    def wire(rt: Runtime) -> Wiring:
        store = ContentStore(settings.updater_root).open()
        app.state.receiver = Receiver(rt=rt, store=store, clock=now)
        app.state.downloads = Downloads(rt=rt, store=store, clock=now)
        deliverer = Deliverer(nc=rt.nc, eventlog=rt.eventlog, server=server)

        async def auto_times(runtime: Runtime) -> None:
            await auto.auto_time_rounds(
                runtime, deliverer=deliverer, clock=now, every=settings.updater_auto_update_tick
            )

        return Wiring(
            ddl=[f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"],
            projections=[
                MachineDirectory(SCHEMA),
                Uploads(),
                Deliveries(),
                PackageCatalog(SCHEMA, "packages"),  # handlers.READ_MODELS: "updater.packages"
                Inventories(SCHEMA, "inventories"),
                Presence(SCHEMA),
                AutoUpdateTimes(),
            ],
            consumers=[
                *handlers.router.bind(deliverer=deliverer, clock=now),
                *auto.router.bind(deliverer=deliverer, clock=now),
            ],
            tasks=[auto_times],
        )

    return Service(name=NAME, settings=settings, port=settings.updater_port, app=app, wire=wire)
