"""Composition root of the scheduler service: the only place that picks implementations."""

from __future__ import annotations

import functools

from fastapi import FastAPI

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_scheduler import handlers
from dpm_scheduler.power.wol import WakeOnLan
from dpm_scheduler.settings import SchedulerSettings
from dpm_schemas.events import PowerOnRequested
from dpm_schemas.subjects import durable_name

NAME = "scheduler"
SCHEMA = "scheduler"


def bootstrap(settings: SchedulerSettings) -> Service:
    def wire(rt: Runtime) -> Wiring:
        driver = WakeOnLan(
            port=settings.scheduler_wol_port,
            interface=settings.scheduler_wol_interface,
            repeats=settings.scheduler_wol_repeats,
        )
        power_on = functools.partial(
            handlers.power_on_requested,
            driver=driver,
            eventlog=rt.eventlog,
            schema=SCHEMA,
            port=settings.scheduler_wol_port,
        )
        return Wiring(
            ddl=directory_ddl(SCHEMA),
            consumers=[
                directory_consumer(NAME, SCHEMA),
                ConsumerSpec(durable=durable_name(NAME, "power"), handlers={PowerOnRequested: power_on}),
            ],
        )

    app = FastAPI(title="dpm scheduler", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.scheduler_port, app=app, wire=wire)
