"""Scheduler reactions to the log: load the execution, decide (domain/), save the decision with its
effects in the consumer's transaction. Message first, dependencies as keyword parameters (bound in
bootstrap); nothing here sends a packet or a command (effects run after the commit, rounds.drain)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from dpm_runtime.eventlog import NO_STREAM, Conn, StreamConflict
from dpm_scenarios import ExecutionState
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.domain.decide import (
    decide_arrival,
    decide_step_reported,
    decide_suspend,
    finish,
    queue_refusal,
)
from dpm_scheduler.domain.execution import Execution, Limits
from dpm_schemas import Metadata, RecordedEvent
from dpm_schemas.events import (
    ExecutionQueued,
    MachineBooted,
    MachineCameOnline,
    MulticastStartRequested,
    ScenarioRunRequested,
    StepReported,
    SuspendRequested,
)

Clock = Callable[[], datetime]
NAMESPACE = uuid.UUID("1b7e0f0c-6a55-4c52-9d59-0a8f4c3c5e11")


def execution_id(run_id: uuid.UUID, machine_id: uuid.UUID) -> uuid.UUID:
    """One execution per run and machine, so a redelivered run request creates nothing twice."""
    return uuid.uuid5(NAMESPACE, f"{run_id}:{machine_id}")


async def queue(
    conn: Conn,
    e: ScenarioRunRequested,
    *,
    order: int,
    cause: RecordedEvent | None,
    meta: Metadata,
    store: ExecutionStore,
    directory: Directory,
) -> None:
    """An execution per machine of the run (operator's or a schedule's), in ``order`` among runs; each
    keeps the run's correlation and trace for the appends of its timers."""
    for index, machine_id in enumerate(e.machine_ids):
        x = Execution(
            execution_id=execution_id(e.run_id, machine_id),
            correlation_id=meta.correlation_id,
            traceparent=meta.traceparent,
            **_run_fields(e, machine_id),  # type: ignore[arg-type]
        )
        queued = ExecutionQueued(execution_id=x.execution_id, revision=e.revision, **_run_fields(e, machine_id))
        try:
            async with conn.transaction():  # savepoint: a redelivery only skips what exists
                await store.append(conn, x, [queued], cause, expected=NO_STREAM)
                await store.insert(conn, x, order=order, not_before=e.not_before)
        except StreamConflict:
            continue
        if queue_refusal(e.spec, index, scenario=e.name, machine="") is not None:
            refusal = queue_refusal(e.spec, index, scenario=e.name, machine=await directory.name(conn, machine_id))
            await store.apply(conn, finish(x, refusal), cause)


def _run_fields(e: ScenarioRunRequested, machine_id: uuid.UUID) -> dict[str, object]:
    return {"run_id": e.run_id, "machine_id": machine_id, "scenario_id": e.scenario_id, "name": e.name, "spec": e.spec}


async def run_requested(rec: RecordedEvent, conn: Conn, *, store: ExecutionStore, directory: Directory) -> None:
    e = rec.event
    assert isinstance(e, ScenarioRunRequested)
    meta = Metadata(correlation_id=rec.metadata.correlation_id, traceparent=rec.metadata.traceparent)
    await queue(conn, e, order=rec.position, cause=rec, meta=meta, store=store, directory=directory)


async def machine_booted(
    rec: RecordedEvent, conn: Conn, *, store: ExecutionStore, directory: Directory, clock: Clock, limits: Limits
) -> None:
    e = rec.event
    assert isinstance(e, MachineBooted)
    machine_id = await directory.by_mac(conn, e.mac)
    if machine_id is not None:
        await _arrival(rec, conn, machine_id, ExecutionState.WAITING_BOOT, store, clock, limits)


async def came_online(rec: RecordedEvent, conn: Conn, *, store: ExecutionStore, clock: Clock, limits: Limits) -> None:
    e = rec.event
    assert isinstance(e, MachineCameOnline)
    await _arrival(rec, conn, e.machine_id, ExecutionState.WAITING_ONLINE, store, clock, limits)


async def _arrival(
    rec: RecordedEvent,
    conn: Conn,
    machine_id: uuid.UUID,
    via: ExecutionState,
    store: ExecutionStore,
    clock: Clock,
    limits: Limits,
) -> None:
    x = await store.of_machine(conn, machine_id, via)
    if x is not None:
        await store.apply(conn, decide_arrival(x, via, clock(), limits), rec)


async def step_reported(rec: RecordedEvent, conn: Conn, *, store: ExecutionStore, clock: Clock, limits: Limits) -> None:
    e = rec.event
    assert isinstance(e, StepReported)
    x = await store.get(conn, e.execution_id)
    if x is not None:
        await store.apply(conn, decide_step_reported(x, e, clock(), limits), rec)


async def suspend_requested(
    rec: RecordedEvent, conn: Conn, *, store: ExecutionStore, clock: Clock, limits: Limits
) -> None:
    e = rec.event
    assert isinstance(e, SuspendRequested)
    x = await store.get(conn, e.execution_id)
    if x is not None:
        await store.apply(conn, decide_suspend(x, clock(), limits), rec)


async def start_now(rec: RecordedEvent, conn: Conn, *, store: ExecutionStore, clock: Clock) -> None:
    e = rec.event
    assert isinstance(e, MulticastStartRequested)
    await store.start_now(conn, e.scenario_id, clock())
