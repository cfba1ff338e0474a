"""Composition root of the scheduler service: the only place that picks implementations and binds
the handlers' dependencies by name."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.directory import MachineDirectory, Presence
from dpm_runtime.service import Runtime, Service, Task, Wiring
from dpm_scheduler import handlers
from dpm_scheduler.adapters import effects_sql, executions_sql, power_watch_sql, schedules_sql
from dpm_scheduler.adapters.crashpoint import crash_point
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.driver import PowerDriver
from dpm_scheduler.adapters.effects_sql import Outbox
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.adapters.power import EffectRunner
from dpm_scheduler.adapters.power_watch_sql import PowerWatches
from dpm_scheduler.adapters.schedules_sql import ScheduleTable
from dpm_scheduler.adapters.wol import Spacing, WakeOnLan
from dpm_scheduler.domain.execution import Limits
from dpm_scheduler.powerwatch import PowerWatchdog
from dpm_scheduler.projections import ScenarioDirectory
from dpm_scheduler.rounds import Rounds
from dpm_scheduler.schedules import Firing
from dpm_scheduler.settings import SchedulerSettings

log = logging.getLogger(__name__)

NAME = "scheduler"
SCHEMA = "scheduler"


def utc_now() -> datetime:
    """The Clock port's implementation: the domain gets ``now`` as a parameter, never reads it."""
    return datetime.now(UTC)


def _every(period: float, step: Callable[[], Awaitable[object]], what: str, wake: asyncio.Event | None = None) -> Task:
    """A background loop: ``step`` about every ``period`` seconds (sooner when ``wake`` is set)."""

    async def loop(runtime: Runtime) -> None:
        while not runtime.stop.is_set():
            if wake is not None:
                wake.clear()  # before the step: a wake-up set during it runs the next one at once
            try:
                await step()
            except Exception as exc:  # the database may blip; the next round catches up
                log.warning("%s: %r", what, exc)
            waiter = wake.wait() if wake is not None else runtime.stop.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, period)

    return loop


def limits_of(settings: SchedulerSettings) -> Limits:
    return Limits(
        concurrency=settings.scheduler_concurrency,
        power_on_timeout=settings.scheduler_power_on_timeout,
        no_response_timeout=settings.scheduler_no_response_timeout,
        suspend_timeout=settings.scheduler_suspend_timeout,
    )


def consumers(
    settings: SchedulerSettings, *, driver: str, store: ExecutionStore, directory: Directory
) -> list[ConsumerSpec]:
    """Every handler of the router, each given the dependencies it names."""
    power = handlers.PowerOn(
        driver=driver, port=settings.scheduler_wol_port, timeout=settings.scheduler_power_on_timeout
    )
    return handlers.router.bind(
        store=store,
        directory=directory,
        clock=utc_now,
        limits=limits_of(settings),
        watches=PowerWatches(SCHEMA),
        power=power,
        schedules=ScheduleTable(SCHEMA),
    )


def wire(settings: SchedulerSettings, rt: Runtime, driver: PowerDriver | None) -> Wiring:
    """What the scheduler runs once connected: its reactions, read models and timer rounds."""
    power = driver or WakeOnLan(
        port=settings.scheduler_wol_port,
        interface=settings.scheduler_wol_interface,
        repeats=settings.scheduler_wol_repeats,
    )
    directory, store = Directory(SCHEMA), ExecutionStore(SCHEMA, Outbox(SCHEMA))
    spacing = Spacing(settings.scheduler_power_on_interval)  # the one pacing gate for every wake
    runner = EffectRunner(rt.pool, directory, power, spacing, rt.nc)
    limits, watches = limits_of(settings), PowerWatches(SCHEMA)
    rounds = Rounds(rt.pool, rt.eventlog, store, directory, runner, utc_now, limits, rt.tracer, watches=watches)
    if (crash := crash_point(settings.scheduler_test_crash_point)) is not None:
        rounds.before_effect = crash
    firing = Firing(rt.pool, rt.eventlog, store, directory, ScheduleTable(SCHEMA), utc_now, rt.tracer)
    timeout = settings.scheduler_power_on_timeout
    watchdog = PowerWatchdog(rt.pool, rt.eventlog, directory, watches, timeout, utc_now, rt.tracer)

    async def tick() -> None:
        await firing.fire_due()
        await rounds.tick()

    ddl = [
        f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"',
        *power_watch_sql.ddl(SCHEMA),
        *executions_sql.ddl(SCHEMA),
        *effects_sql.ddl(SCHEMA),
        *schedules_sql.ddl(SCHEMA),
    ]
    return Wiring(
        ddl=ddl,
        projections=[MachineDirectory(SCHEMA), Presence(SCHEMA), ScenarioDirectory()],
        consumers=consumers(settings, driver=power.name, store=store, directory=directory),
        tasks=[
            _every(min(1.0, timeout / 4), watchdog.expire, "power-on watch"),
            _every(settings.scheduler_tick, tick, "execution rounds"),
            _every(settings.scheduler_tick, rounds.drain, "effects", wake=store.kick),
        ],
    )


def bootstrap(settings: SchedulerSettings, *, driver: PowerDriver | None = None) -> Service:
    """``driver``: the power driver (Wake-on-LAN unless a test injects one)."""
    app = FastAPI(title="dpm scheduler", version="0.1.0")
    return Service(
        name=NAME, settings=settings, port=settings.scheduler_port, app=app, wire=lambda rt: wire(settings, rt, driver)
    )
