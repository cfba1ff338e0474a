"""The scheduler's reactions to the log, on its router (dependencies bound in bootstrap.py).

- ``executions``: load the execution, decide (domain/), save the decision with its effects in the
  consumer's transaction; the outbox runs them after the commit (``rounds.drain``).
- ``power``: an operator's power-on goes into the outbox with the PowerOnSent that says so, and a
  durable watch gives the machine the remote power-on timeout to come online or network-boot.
- ``schedules``: keep each schedule with its next firing (``schedules.py``, a timer round, fires them).

Nothing here sends a packet or a command, and nothing builds metadata: ``ctx.append`` carries the
cause's correlation and trace, and a run's executions keep them for the appends of their rounds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dpm_runtime.eventlog import NO_STREAM, StreamConflict
from dpm_runtime.handlers import Ctx, Retry, Router
from dpm_runtime.projection import require_position
from dpm_scenarios import ExecutionState
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.adapters.power_watch_sql import PowerWatches
from dpm_scheduler.adapters.schedules_sql import ScheduleTable
from dpm_scheduler.adapters.wol import destination
from dpm_scheduler.domain.decide import (
    decide_arrival,
    decide_deploy_unavailable,
    decide_step_reported,
    decide_suspend,
    finish,
    queue_refusal,
)
from dpm_scheduler.domain.effects import Wake
from dpm_scheduler.domain.execution import Execution, Limits
from dpm_scheduler.domain.schedules import next_fire
from dpm_scheduler.projections import PRESENCE
from dpm_schemas import subjects
from dpm_schemas.events import (
    DeployBootUnavailable,
    ExecutionQueued,
    MachineBooted,
    MachineCameOnline,
    MulticastStartRequested,
    PowerOnRequested,
    PowerOnSent,
    PowerOnSucceeded,
    ScenarioRunRequested,
    ScheduleDeleted,
    ScheduleSaved,
    StepReported,
    SuspendRequested,
)
from dpm_schemas.ids import stream_id

router = Router(service="scheduler")
ACTOR = "scheduler"
Clock = Callable[[], datetime]
NAMESPACE = uuid.UUID("1b7e0f0c-6a55-4c52-9d59-0a8f4c3c5e11")


@dataclass(frozen=True)
class PowerOn:
    """How an operator's power-on is sent and verified (from the settings)."""

    driver: str  # the power driver's name, recorded in PowerOnSent
    port: int  # the Wake-on-LAN port
    timeout: float  # seconds the machine has to answer (DPM-E113 otherwise)


def execution_id(run_id: uuid.UUID, machine_id: uuid.UUID) -> uuid.UUID:
    """One execution per run and machine, so a redelivered run request creates nothing twice."""
    return uuid.uuid5(NAMESPACE, f"{run_id}:{machine_id}")


# -- executions ---------------------------------------------------------------------------------


@router.handles(ScenarioRunRequested, durable="executions", actor=ACTOR)
async def run_requested(e: ScenarioRunRequested, ctx: Ctx, *, store: ExecutionStore, directory: Directory) -> None:
    await queue(ctx, e, order=ctx.position, store=store, directory=directory)


async def queue(ctx: Ctx, e: ScenarioRunRequested, *, order: int, store: ExecutionStore, directory: Directory) -> None:
    """An execution per machine of the run (an operator's or a schedule's), in ``order`` among runs;
    each keeps the run's correlation and trace (``ctx.metadata``) for the appends of its rounds."""
    for index, machine_id in enumerate(e.machine_ids):
        x = _execution(e, machine_id, ctx)
        queued = ExecutionQueued(
            execution_id=x.execution_id,
            run_id=e.run_id,
            machine_id=machine_id,
            scenario_id=e.scenario_id,
            revision=e.revision,
            name=e.name,
            spec=e.spec,
        )
        try:
            async with ctx.conn.transaction():  # savepoint: a redelivery only skips what exists
                await store.append(ctx, x, [queued], expected=NO_STREAM)
                await store.insert(ctx.conn, x, order=order, not_before=e.not_before)
        except StreamConflict:
            continue
        if queue_refusal(e.spec, index, scenario=e.name, machine="") is not None:
            machine = await directory.name(ctx.conn, machine_id)
            await store.apply(ctx, finish(x, queue_refusal(e.spec, index, scenario=e.name, machine=machine)))


def _execution(e: ScenarioRunRequested, machine_id: uuid.UUID, ctx: Ctx) -> Execution:
    meta = ctx.metadata
    return Execution(
        execution_id=execution_id(e.run_id, machine_id),
        run_id=e.run_id,
        machine_id=machine_id,
        scenario_id=e.scenario_id,
        name=e.name,
        spec=e.spec,
        correlation_id=meta.correlation_id,
        traceparent=meta.traceparent,
    )


@router.handles(MachineBooted, durable="executions", actor=ACTOR)
async def machine_booted(
    e: MachineBooted, ctx: Ctx, *, store: ExecutionStore, directory: Directory, clock: Clock, limits: Limits
) -> None:
    machine_id = await directory.by_mac(ctx.conn, e.mac)
    if machine_id is not None:
        await _arrival(ctx, machine_id, ExecutionState.WAITING_BOOT, store, clock, limits)


@router.handles(MachineCameOnline, durable="executions", actor=ACTOR)
async def came_online(e: MachineCameOnline, ctx: Ctx, *, store: ExecutionStore, clock: Clock, limits: Limits) -> None:
    await _arrival(ctx, e.machine_id, ExecutionState.WAITING_ONLINE, store, clock, limits)


async def _arrival(
    ctx: Ctx, machine_id: uuid.UUID, via: ExecutionState, store: ExecutionStore, clock: Clock, limits: Limits
) -> None:
    x = await store.of_machine(ctx.conn, machine_id, via)
    if x is not None:
        await store.apply(ctx, decide_arrival(x, via, await store.logged_at(ctx, clock), limits))


@router.handles(StepReported, durable="executions", actor=ACTOR)
async def step_reported(e: StepReported, ctx: Ctx, *, store: ExecutionStore, clock: Clock, limits: Limits) -> None:
    x = await store.get(ctx.conn, e.execution_id)
    if x is not None:
        await store.apply(ctx, decide_step_reported(x, e, await store.logged_at(ctx, clock), limits))


@router.handles(DeployBootUnavailable, durable="executions", actor=ACTOR)
async def deploy_unavailable(e: DeployBootUnavailable, ctx: Ctx, *, store: ExecutionStore) -> None:
    """pxe withheld the deploy environment (its files are missing): the execution fails at once."""
    x = await store.get(ctx.conn, e.execution_id)
    if x is not None:
        await store.apply(ctx, decide_deploy_unavailable(x, e))


@router.handles(SuspendRequested, durable="executions", actor=ACTOR)
async def suspend_requested(
    e: SuspendRequested, ctx: Ctx, *, store: ExecutionStore, clock: Clock, limits: Limits
) -> None:
    x = await store.get(ctx.conn, e.execution_id)
    if x is not None:
        await store.apply(ctx, decide_suspend(x, await store.logged_at(ctx, clock), limits))


@router.handles(MulticastStartRequested, durable="executions", actor=ACTOR)
async def start_now(e: MulticastStartRequested, ctx: Ctx, *, store: ExecutionStore, clock: Clock) -> None:
    await store.start_now(ctx.conn, e.scenario_id, clock())


# -- operators' power-ons -----------------------------------------------------------------------


@router.handles(PowerOnRequested, durable="power", actor=ACTOR)
async def power_on_requested(
    e: PowerOnRequested,
    ctx: Ctx,
    *,
    directory: Directory,
    store: ExecutionStore,
    watches: PowerWatches,
    power: PowerOn,
    clock: Clock,
) -> None:
    """Queue the power-on and start watching: the machine has ``power.timeout`` seconds to answer."""
    target = await directory.power_target(ctx.conn, e.machine_id)
    if target is None:  # the directory may not have seen the registration yet
        raise Retry(f"machine {e.machine_id} not in the directory yet", delay=0.5)
    await require_position(ctx.conn, PRESENCE, ctx.position)  # "already on" is read from presence
    stream = stream_id(subjects.POWER, e.machine_id)
    if await directory.online(ctx.conn, e.machine_id):  # already running: nothing to wake, nothing to wait for
        await ctx.append(stream, [PowerOnSucceeded(machine_id=e.machine_id, via="already-on")])
        return
    await store.outbox.put(ctx.conn, (Wake(e.machine_id),), ctx.metadata.traceparent)
    ctx.after_commit(store.wake_drain)
    await watches.watch(ctx.conn, e.machine_id, clock() + timedelta(seconds=power.timeout), ctx.metadata)
    sent = PowerOnSent(
        machine_id=e.machine_id,
        driver=power.driver,
        macs=target.macs,
        destination=f"{destination(target)}:{power.port}",
    )
    await ctx.append(stream, [sent])


@router.handles(MachineCameOnline, durable="power", actor=ACTOR)
async def agent_answered(e: MachineCameOnline, ctx: Ctx, *, watches: PowerWatches) -> None:
    """The agent came online: a pending power-on succeeded."""
    await _answered(ctx, watches, e.machine_id, "agent")


@router.handles(MachineBooted, durable="power", actor=ACTOR)
async def netboot_answered(e: MachineBooted, ctx: Ctx, *, directory: Directory, watches: PowerWatches) -> None:
    """One of the machine's NICs network-booted: a pending power-on succeeded."""
    machine_id = await directory.by_mac(ctx.conn, e.mac)
    if machine_id is not None:
        await _answered(ctx, watches, machine_id, "netboot")


async def _answered(ctx: Ctx, watches: PowerWatches, machine_id: uuid.UUID, via: str) -> None:
    if await watches.answered(ctx.conn, machine_id):
        await ctx.append(stream_id(subjects.POWER, machine_id), [PowerOnSucceeded(machine_id=machine_id, via=via)])


# -- schedules ----------------------------------------------------------------------------------


@router.handles(ScheduleSaved, durable="schedules")
async def schedule_saved(e: ScheduleSaved, ctx: Ctx, *, schedules: ScheduleTable, clock: Clock) -> None:
    await schedules.save(ctx.conn, e, next_fire(e, clock()), ctx.position)


@router.handles(ScheduleDeleted, durable="schedules")
async def schedule_deleted(e: ScheduleDeleted, ctx: Ctx, *, schedules: ScheduleTable) -> None:
    await schedules.delete(ctx.conn, e.schedule_id)
