"""Composition root of the imager service: the only place that picks implementations."""

from __future__ import annotations

from fastapi import FastAPI

from dpm_imager.settings import ImagerSettings
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring

NAME = "imager"
SCHEMA = "imager"


def bootstrap(settings: ImagerSettings) -> Service:
    def wire(_rt: Runtime) -> Wiring:
        return Wiring(ddl=directory_ddl(SCHEMA), consumers=[directory_consumer(NAME, SCHEMA)])

    app = FastAPI(title="dpm imager", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.imager_port, app=app, wire=wire)
