"""Composition root of the updater service: the only place that picks implementations."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from dpm_runtime.directory import MachineDirectory
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_updater import routes
from dpm_updater.adapters.content import ContentStore
from dpm_updater.projections import SCHEMA, Uploads
from dpm_updater.settings import UpdaterSettings
from dpm_updater.uploads import Receiver

NAME = "updater"


def bootstrap(settings: UpdaterSettings) -> Service:
    app = FastAPI(title="dpm updater", version="0.1.0")
    app.include_router(routes.router)

    def wire(rt: Runtime) -> Wiring:
        store = ContentStore(settings.updater_root).open()
        app.state.receiver = Receiver(rt=rt, store=store, clock=lambda: datetime.now(UTC))
        return Wiring(
            ddl=[f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"],
            projections=[MachineDirectory(SCHEMA), Uploads()],
        )

    return Service(name=NAME, settings=settings, port=settings.updater_port, app=app, wire=wire)
