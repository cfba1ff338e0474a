"""Composition root of the scheduler service: the only place that picks implementations and binds
the handlers' dependencies by name."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_scheduler import handlers, powerwatch
from dpm_scheduler.adapters import effects_sql, executions_sql
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.driver import PowerDriver
from dpm_scheduler.adapters.effects_sql import Outbox
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.adapters.power import EffectRunner
from dpm_scheduler.adapters.wol import Spacing, WakeOnLan
from dpm_scheduler.domain.execution import Limits
from dpm_scheduler.rounds import Rounds
from dpm_scheduler.schedules import Schedules
from dpm_scheduler.schedules import ddl as schedules_ddl
from dpm_scheduler.settings import SchedulerSettings
from dpm_schemas.events import (
    MachineBooted,
    MachineCameOnline,
    MachineWentOffline,
    MulticastStartRequested,
    PowerOnRequested,
    ScenarioRunRequested,
    StepReported,
    SuspendRequested,
)
from dpm_schemas.subjects import durable_name

log = logging.getLogger(__name__)

NAME = "scheduler"
SCHEMA = "scheduler"


def utc_now() -> datetime:
    """The Clock port's implementation: the domain gets ``now`` as a parameter, never reads it."""
    return datetime.now(UTC)


def _every(period: float, step: Callable[[], Awaitable[object]], what: str, wake: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
    """A background loop: ``step`` about every ``period`` seconds (sooner when ``wake`` is set)."""

    async def loop(runtime: Runtime) -> None:
        while not runtime.stop.is_set():
            try:
                await step()
            except Exception as exc:  # the database may blip; the next round catches up
                log.warning("%s: %r", what, exc)
            waiter = wake.wait() if wake is not None else runtime.stop.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, period)
            if wake is not None:
                wake.clear()

    return loop


def _power_consumer(
    settings: SchedulerSettings, rt: Runtime, directory: Directory, outbox: Outbox, driver_name: str
) -> ConsumerSpec:
    """Operators' power-ons and their verification (the machine came online or network-booted)."""
    answered = functools.partial(powerwatch.machine_answered, eventlog=rt.eventlog, directory=directory)
    power_on = functools.partial(
        powerwatch.power_on_requested,
        directory=directory,
        outbox=outbox,
        eventlog=rt.eventlog,
        driver_name=driver_name,
        port=settings.scheduler_wol_port,
        timeout=settings.scheduler_power_on_timeout,
        clock=utc_now,
    )
    return ConsumerSpec(
        durable=durable_name(NAME, "power"),
        handlers={
            PowerOnRequested: power_on,
            MachineCameOnline: answered,
            MachineWentOffline: functools.partial(powerwatch.presence_changed, schema=SCHEMA),
            MachineBooted: answered,
        },
    )


def _executions_consumer(store: ExecutionStore, directory: Directory, limits: Limits) -> ConsumerSpec:
    """The executions' reactions, their dependencies bound by name."""
    bind = functools.partial
    x: dict[str, Any] = {"store": store, "clock": utc_now, "limits": limits}
    return ConsumerSpec(
        durable=durable_name(NAME, "executions"),
        handlers={
            ScenarioRunRequested: bind(handlers.run_requested, store=store, directory=directory),
            MachineBooted: bind(handlers.machine_booted, directory=directory, **x),
            MachineCameOnline: bind(handlers.came_online, **x),
            StepReported: bind(handlers.step_reported, **x),
            MulticastStartRequested: bind(handlers.start_now, store=store, clock=utc_now),
            SuspendRequested: bind(handlers.suspend_requested, **x),
        },
    )


def bootstrap(settings: SchedulerSettings, *, driver: PowerDriver | None = None) -> Service:
    """``driver``: the power driver (Wake-on-LAN unless a test injects one)."""

    def wire(rt: Runtime) -> Wiring:
        power = driver or WakeOnLan(
            port=settings.scheduler_wol_port,
            interface=settings.scheduler_wol_interface,
            repeats=settings.scheduler_wol_repeats,
        )
        timeout = settings.scheduler_power_on_timeout
        limits = Limits(
            concurrency=settings.scheduler_concurrency,
            power_on_timeout=timeout,
            no_response_timeout=settings.scheduler_no_response_timeout,
            suspend_timeout=settings.scheduler_suspend_timeout,
        )
        directory = Directory(SCHEMA)
        outbox = Outbox(SCHEMA)
        store = ExecutionStore(rt.eventlog, SCHEMA, outbox)
        spacing = Spacing(settings.scheduler_power_on_interval)  # the one pacing gate for every wake
        runner = EffectRunner(rt.pool, directory, power, spacing, rt.nc)
        rounds = Rounds(rt.pool, rt.eventlog, store, directory, runner, utc_now, limits)
        schedules = Schedules(rt.pool, rt.eventlog, store, directory, utc_now)

        async def tick() -> None:
            await schedules.fire_due()
            await rounds.tick()

        async def expire() -> None:
            await powerwatch.expire_power_watches(
                pool=rt.pool, eventlog=rt.eventlog, directory=directory, timeout=timeout, clock=utc_now
            )

        return Wiring(
            ddl=[
                *directory_ddl(SCHEMA),
                *powerwatch.watch_ddl(SCHEMA),
                *executions_sql.ddl(SCHEMA),
                *effects_sql.ddl(SCHEMA),
                *schedules_ddl(SCHEMA),
            ],
            consumers=[
                directory_consumer(NAME, SCHEMA),
                _power_consumer(settings, rt, directory, outbox, power.name),
                _executions_consumer(store, directory, limits),
                schedules.consumer(),
            ],
            tasks=[
                _every(min(1.0, timeout / 4), expire, "power-on watch"),
                _every(settings.scheduler_tick, tick, "execution rounds"),
                _every(settings.scheduler_tick, rounds.drain, "effects", wake=store.kick),
            ],
        )

    app = FastAPI(title="dpm scheduler", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.scheduler_port, app=app, wire=wire)
