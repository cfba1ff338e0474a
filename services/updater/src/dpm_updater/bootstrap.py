"""Composition root of the updater service: the only place that picks implementations."""

from __future__ import annotations

from fastapi import FastAPI

from dpm_runtime.directory import MachineDirectory
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_updater.settings import UpdaterSettings

NAME = "updater"
SCHEMA = "updater"


def bootstrap(settings: UpdaterSettings) -> Service:
    def wire(_rt: Runtime) -> Wiring:
        return Wiring(projections=[MachineDirectory(SCHEMA)])

    app = FastAPI(title="dpm updater", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.updater_port, app=app, wire=wire)
