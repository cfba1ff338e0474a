"""Composition root of the updater service: the only place that picks implementations."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from dpm_runtime.catalog import Inventories, PackageCatalog
from dpm_runtime.directory import MachineDirectory, Presence
from dpm_runtime.projection import Projection
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_schemas import DpmError
from dpm_updater import auto, auto_sql, handlers, rollouts, routes, source_handlers, upgrades
from dpm_updater.adapters.content import ContentStore
from dpm_updater.deliverer import Deliverer
from dpm_updater.downloads import Downloads
from dpm_updater.projections import SCHEMA, AutoUpdateTimes, Deliveries, Uploads
from dpm_updater.rollout_models import Rollouts
from dpm_updater.settings import UpdaterSettings
from dpm_updater.source_models import Sources
from dpm_updater.source_syncs import SourceSyncs
from dpm_updater.uploads import Receiver

NAME = "updater"


def now() -> datetime:
    return datetime.now(UTC)


def projections() -> list[Projection]:
    """The updater's read models."""
    return [
        MachineDirectory(SCHEMA),
        Uploads(),
        Deliveries(),
        PackageCatalog(SCHEMA, "packages"),  # handlers.READ_MODELS: "updater.packages"
        Inventories(SCHEMA, "inventories"),
        Presence(SCHEMA),
        AutoUpdateTimes(),
        Rollouts(),
        Sources(),  # source_handlers.READ_MODEL: "updater.source_syncs"
    ]


def bootstrap(settings: UpdaterSettings, *, clock: Callable[[], datetime] = now) -> Service:
    """``clock``: what package source syncs are scheduled and stamped by (tests inject one)."""
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
        syncs = SourceSyncs(
            rt.pool, rt.eventlog, store, clock, settings.updater_source_credentials, settings.updater_source_tick
        )

        async def auto_times(runtime: Runtime) -> None:
            await auto.auto_time_rounds(
                runtime, deliverer=deliverer, clock=now, every=settings.updater_auto_update_tick
            )

        held_steps = functools.partial(
            handlers.held_rounds, deliverer=deliverer, clock=now, grace=settings.updater_agent_upgrade_grace
        )
        return Wiring(
            ddl=[f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}", auto_sql.AUTO_GRANTED_DDL, upgrades.WAITS_DDL],
            projections=projections(),
            consumers=[
                *handlers.router.bind(deliverer=deliverer, clock=now),
                *auto.router.bind(deliverer=deliverer, clock=now),
                *rollouts.router.bind(deliverer=deliverer, clock=now, eventlog=rt.eventlog),
                *source_handlers.router.bind(syncs=syncs),
            ],
            tasks=[auto_times, held_steps, syncs.timer],
        )

    return Service(name=NAME, settings=settings, port=settings.updater_port, app=app, wire=wire)
