"""Composition root of the pxe service: the only place that picks implementations."""

from __future__ import annotations

from fastapi import FastAPI

from dpm_pxe.settings import PxeSettings
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring

NAME = "pxe"
SCHEMA = "pxe"


def bootstrap(settings: PxeSettings) -> Service:
    def wire(_rt: Runtime) -> Wiring:
        return Wiring(ddl=directory_ddl(SCHEMA), consumers=[directory_consumer(NAME, SCHEMA)])

    app = FastAPI(title="dpm pxe", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.pxe_port, app=app, wire=wire)
