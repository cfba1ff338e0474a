"""Composition root of the scheduler service: the only place that picks implementations."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from fastapi import FastAPI

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_scheduler import handlers
from dpm_scheduler.executions.engine import Engine, Limits, ddl
from dpm_scheduler.power.wol import Spacing, WakeOnLan
from dpm_scheduler.schedules import Schedules
from dpm_scheduler.schedules import ddl as schedules_ddl
from dpm_scheduler.settings import SchedulerSettings
from dpm_schemas.events import MachineBooted, MachineCameOnline, MachineWentOffline, PowerOnRequested
from dpm_schemas.subjects import durable_name

log = logging.getLogger(__name__)

NAME = "scheduler"
SCHEMA = "scheduler"


def bootstrap(settings: SchedulerSettings) -> Service:
    def wire(rt: Runtime) -> Wiring:
        driver = WakeOnLan(
            port=settings.scheduler_wol_port,
            interface=settings.scheduler_wol_interface,
            repeats=settings.scheduler_wol_repeats,
        )
        timeout = settings.scheduler_power_on_timeout
        power_on = functools.partial(
            handlers.power_on_requested,
            driver=driver,
            eventlog=rt.eventlog,
            schema=SCHEMA,
            port=settings.scheduler_wol_port,
            timeout=timeout,
            spacing=Spacing(settings.scheduler_power_on_interval),
        )
        answered = functools.partial(handlers.machine_answered, eventlog=rt.eventlog, schema=SCHEMA)
        went_offline = functools.partial(handlers.presence_changed, schema=SCHEMA)

        async def expire(runtime: Runtime) -> None:
            """Fail power-ons past their deadline, about once a second."""
            period = min(1.0, timeout / 4)
            while not runtime.stop.is_set():
                try:
                    await handlers.expire_power_watches(
                        pool=runtime.pool, eventlog=runtime.eventlog, schema=SCHEMA, timeout=timeout
                    )
                except Exception as exc:  # the database may blip; the next round catches up
                    log.warning("power-on watch: %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runtime.stop.wait(), period)

        engine = Engine(
            pool=rt.pool,
            eventlog=rt.eventlog,
            nc=rt.nc,
            driver=driver,
            spacing=Spacing(settings.scheduler_power_on_interval),
            schema=SCHEMA,
            limits=Limits(
                concurrency=settings.scheduler_concurrency,
                power_on_timeout=timeout,
                no_response_timeout=settings.scheduler_no_response_timeout,
                suspend_timeout=settings.scheduler_suspend_timeout,
            ),
        )

        schedules = Schedules(engine)

        async def rounds(runtime: Runtime) -> None:
            """Drive executions (watchdogs, simulated steps, sessions, starts) and fire due schedules."""
            while not runtime.stop.is_set():
                try:
                    await schedules.fire_due()
                    await engine.tick()
                except Exception as exc:  # the database may blip; the next round catches up
                    log.warning("execution engine: %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runtime.stop.wait(), settings.scheduler_tick)

        return Wiring(
            ddl=[*directory_ddl(SCHEMA), *handlers.watch_ddl(SCHEMA), *ddl(SCHEMA), *schedules_ddl(SCHEMA)],
            consumers=[
                directory_consumer(NAME, SCHEMA),
                ConsumerSpec(
                    durable=durable_name(NAME, "power"),
                    handlers={
                        PowerOnRequested: power_on,
                        MachineCameOnline: answered,
                        MachineWentOffline: went_offline,
                        MachineBooted: answered,
                    },
                ),
                engine.consumer(),
                schedules.consumer(),
            ],
            tasks=[expire, rounds],
        )

    app = FastAPI(title="dpm scheduler", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.scheduler_port, app=app, wire=wire)
