"""Composition root of the scheduler service: the only place that picks implementations."""

from __future__ import annotations

from fastapi import FastAPI

from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_scheduler.settings import SchedulerSettings

NAME = "scheduler"
SCHEMA = "scheduler"


def bootstrap(settings: SchedulerSettings) -> Service:
    def wire(_rt: Runtime) -> Wiring:
        return Wiring(ddl=directory_ddl(SCHEMA), consumers=[directory_consumer(NAME, SCHEMA)])

    app = FastAPI(title="dpm scheduler", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.scheduler_port, app=app, wire=wire)
