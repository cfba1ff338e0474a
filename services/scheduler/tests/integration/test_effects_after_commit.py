"""No Wake-on-LAN and no shutdown is sent from a transaction that rolls back (issue 13): the
decisions of the consumer reactions and the rounds put their effects into the outbox of their own
transaction; only the drain, after the commit, sends them. Real PostgreSQL; the power driver and
the agent's NATS are fakes that record what would have left the server.

The handlers run as the consumer runs them: in a ``UnitOfWork`` (the kernel's ``Ctx``) over the
logged event, inside a transaction, their ``after_commit`` effects run only once it committed."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
import psycopg
import pytest

from dpm_runtime.context import UnitOfWork, run_effects
from dpm_runtime.directory import Presence, directory_ddl
from dpm_runtime.eventlog import StreamConflict
from dpm_runtime.projection import ProjectionRunner
from dpm_runtime.registry import Qualified
from dpm_scenarios import ExecutionState
from dpm_scheduler import handlers
from dpm_scheduler.adapters import effects_sql, executions_sql, power_watch_sql
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.driver import PowerTarget
from dpm_scheduler.adapters.effects_sql import Outbox
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.adapters.power import EffectRunner
from dpm_scheduler.adapters.power_watch_sql import PowerWatches
from dpm_scheduler.adapters.wol import Spacing
from dpm_scheduler.domain.effects import Effect
from dpm_scheduler.domain.execution import Execution, Limits
from dpm_scheduler.powerwatch import PowerWatchdog
from dpm_scheduler.rounds import Rounds
from dpm_schemas import E, Metadata, NewEvent, subjects
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    PowerOnFailed,
    PowerOnRequested,
    PowerOnSent,
    StepReported,
)
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration
SCHEMA = "scheduler"


class Rollback(Exception):
    """Raised after the decision, inside its transaction: everything it wrote is undone."""


class FakeDriver:
    name = "fake"

    def __init__(self) -> None:
        self.woken: list[str] = []

    async def power_on(self, target: PowerTarget) -> None:
        self.woken.append(target.machine_id)


class FakeNats:
    """The agent is offline (DPM-E120), and every command that would have gone out is recorded."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    async def request(self, subject: str, data: bytes, timeout: float) -> object:
        self.commands.append(subject)
        raise nats.errors.NoRespondersError


@pytest.fixture
async def world(pool, eventlog):  # type: ignore[no-untyped-def]
    async with pool.connection() as conn:
        for statement in [
            *directory_ddl(SCHEMA),
            *power_watch_sql.ddl(SCHEMA),
            *executions_sql.ddl(SCHEMA),
            *effects_sql.ddl(SCHEMA),
        ]:
            await conn.execute(statement)
        machine_id = uuid.uuid4()
        await conn.execute(
            f'INSERT INTO "{SCHEMA}".machine_directory (machine_id, name, macs, position) VALUES (%s, %s, %s, 1)',
            (machine_id, "pc1", ["52:54:00:00:00:01"]),
        )
    presence = ProjectionRunner(Qualified("scheduler", Presence("scheduler")), pool=pool, eventlog=eventlog)
    await presence.setup()  # what a power-on reads ("already on?"), caught up before each handler runs
    driver, fake_nc = FakeDriver(), FakeNats()
    directory = Directory(SCHEMA)
    store = ExecutionStore(SCHEMA, Outbox(SCHEMA))
    runner = EffectRunner(pool, directory, driver, Spacing(0), fake_nc)  # type: ignore[arg-type]
    rounds = Rounds(pool, eventlog, store, directory, runner, lambda: datetime.now(UTC), Limits())
    return World(machine_id, driver, fake_nc, store, rounds, directory, eventlog, presence)


@dataclasses.dataclass
class World:
    """One machine in the directory, the scheduler's stores and rounds over fakes that record."""

    machine_id: uuid.UUID
    driver: FakeDriver
    nc: FakeNats
    store: ExecutionStore
    rounds: Rounds
    directory: Directory
    eventlog: Any
    presence: ProjectionRunner

    def __iter__(self) -> Iterator[Any]:
        return iter((self.machine_id, self.driver, self.nc, self.store, self.rounds, self.directory))

    async def handle(self, pool, handler, rec, *, rollback: bool = False, **deps) -> None:  # type: ignore[no-untyped-def]
        """Run ``handler`` as the consumer does: in a Ctx over ``rec``, effects after the commit."""
        await self.presence.step()
        async with pool.connection() as conn, conn.transaction():
            ctx = UnitOfWork(conn, self.eventlog, rec, actor="scheduler")
            await handler(rec.event, ctx, **deps)
            if rollback:
                raise Rollback
        await run_effects(ctx.effects, where="test")


async def _recorded(eventlog, stream: str, event: object):  # type: ignore[no-untyped-def]
    await eventlog.append(stream, None, [NewEvent(event, Metadata.new(actor="test"))])  # type: ignore[arg-type]
    return next(r for r in await eventlog.read_all(limit=10_000) if r.event == event)


async def test_an_operators_wake_from_a_rolled_back_transaction_is_never_sent(pool, eventlog, world) -> None:
    machine_id, driver, _nc, store, rounds, directory = world
    rec = await _recorded(eventlog, stream_id(subjects.POWER, machine_id), PowerOnRequested(machine_id=machine_id))
    kwargs = {
        "directory": directory,
        "store": store,
        "watches": PowerWatches(SCHEMA),
        "power": handlers.PowerOn(driver="fake", port=9, timeout=60.0),
        "clock": lambda: datetime.now(UTC),
    }
    with pytest.raises(Rollback):
        await world.handle(pool, handlers.power_on_requested, rec, rollback=True, **kwargs)
    assert await rounds.drain() == 0 and driver.woken == []  # nothing was sent, nothing is pending
    assert not [r for r in await eventlog.read_all(limit=10_000) if isinstance(r.event, PowerOnSent)]

    await world.handle(pool, handlers.power_on_requested, rec, **kwargs)  # the same reaction, committed
    assert driver.woken == []  # not from inside the transaction either
    assert await rounds.drain() == 1 and driver.woken == [str(machine_id)]
    assert await rounds.drain() == 0 and driver.woken == [str(machine_id)]  # run once, then forgotten


async def test_a_shutdown_at_the_end_from_a_rolled_back_transaction_is_never_sent(pool, eventlog, world) -> None:
    machine_id, _driver, fake_nc, store, rounds, _directory = world
    spec = ScenarioSpec(kind=ScenarioKind.DISK_CHECK, power_off_at_end=True)
    x = Execution(uuid.uuid4(), uuid.uuid4(), machine_id, uuid.uuid4(), "check", spec, correlation_id=uuid.uuid4())
    async with pool.connection() as conn, conn.transaction():
        await store.insert(conn, x, order=1, not_before=None)
        await conn.execute(f"UPDATE {store.table} SET state = 'running' WHERE execution_id = %s", (x.execution_id,))
    report = StepReported(execution_id=x.execution_id, step="disk-check", status=StepStatus.COMPLETED)
    rec = await _recorded(eventlog, stream_id(subjects.EXECUTION, x.execution_id), report)
    deps = {"store": store, "clock": lambda: datetime.now(UTC), "limits": Limits()}

    with pytest.raises(Rollback):
        await world.handle(pool, handlers.step_reported, rec, rollback=True, **deps)
    assert await rounds.drain() == 0 and fake_nc.commands == []
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is ExecutionState.RUNNING  # type: ignore[union-attr]

    await world.handle(pool, handlers.step_reported, rec, **deps)
    assert fake_nc.commands == []
    assert await rounds.drain() == 1 and fake_nc.commands == [subjects.agent_command(machine_id, "shutdown")]
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is ExecutionState.COMPLETED  # type: ignore[union-attr]
    (done,) = [r for r in await eventlog.read_all(limit=10_000) if isinstance(r.event, ExecutionCompleted)]
    assert done.event.power_off == "DPM-E120"  # the agent's answer, recorded after the commit
    assert done.metadata.correlation_id == x.correlation_id  # the run's conversation, on a timer path too


# -- the rounds: a timer's transaction that rolls back after its decision queued a wake ----------


@dataclasses.dataclass(frozen=True)
class FailingOutbox(Outbox):
    """Queues the effects, then the transaction fails: a bug, or another replica's conflict."""

    error: Callable[[], Exception] = lambda: Rollback()

    async def put(self, conn, effects: tuple[Effect, ...], traceparent: str | None = None) -> None:  # type: ignore[no-untyped-def]
        await super().put(conn, effects, traceparent)
        raise self.error()


async def _queued_netboot(pool, store: ExecutionStore, machine_id: uuid.UUID) -> Execution:  # type: ignore[no-untyped-def]
    """A disk check of an offline machine: starting it wakes the machine (after the commit)."""
    spec = ScenarioSpec(kind=ScenarioKind.DISK_CHECK)
    x = Execution(uuid.uuid4(), uuid.uuid4(), machine_id, uuid.uuid4(), "check", spec, correlation_id=uuid.uuid4())
    async with pool.connection() as conn, conn.transaction():
        await store.insert(conn, x, order=1, not_before=None)
    return x


def _conflict() -> Exception:
    return StreamConflict("execution-x", 0, 1)


async def test_a_round_that_rolls_back_after_queuing_a_wake_sends_nothing(pool, eventlog, world) -> None:
    """Another replica moved the execution (a conflict): the round's whole transaction rolls back."""
    machine_id, driver, _nc, store, rounds, _directory = world
    x = await _queued_netboot(pool, store, machine_id)
    good = store.outbox
    store.outbox = FailingOutbox(SCHEMA, error=_conflict)
    with pytest.raises(StreamConflict):
        await rounds.tick()
    assert await rounds.drain() == 0 and driver.woken == []
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is ExecutionState.QUEUED  # type: ignore[union-attr]
    assert not [r for r in await eventlog.read_all(limit=10_000) if isinstance(r.event, ExecutionStarted)]

    store.outbox = good  # the next round, committed: the wake leaves once, after the commit
    await rounds.tick()
    assert driver.woken == []
    assert await rounds.drain() == 1 and driver.woken == [str(machine_id)]
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is ExecutionState.WAITING_BOOT  # type: ignore[union-attr]


async def test_an_execution_whose_savepoint_rolls_back_after_queuing_a_wake_fails_alone_unwoken(
    pool, eventlog, world
) -> None:
    """A bug after the decision queued the wake: that execution's savepoint rolls back (DPM-E116),
    the round commits the failure, and the wake of the rolled-back decision is never sent."""
    machine_id, driver, _nc, store, rounds, _directory = world
    x = await _queued_netboot(pool, store, machine_id)
    store.outbox = FailingOutbox(SCHEMA)
    await rounds.tick()
    assert await rounds.drain() == 0 and driver.woken == []
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is ExecutionState.FAILED  # type: ignore[union-attr]
    (failed,) = [r for r in await eventlog.read_all(limit=10_000) if isinstance(r.event, ExecutionFailed)]
    assert failed.event.code == E.EXECUTION_INTERNAL.code
    assert failed.metadata.correlation_id == x.correlation_id  # the run's conversation, on a timer path
    assert not [r for r in await eventlog.read_all(limit=10_000) if isinstance(r.event, ExecutionStarted)]


async def test_an_operators_power_on_watch_knows_whether_its_wake_up_was_sent(pool, eventlog, world) -> None:
    """Issue 21: the watch counts the remote power-on timeout from the wake-up the drain sent, and
    fails DPM-E113 then; a wake-up never sent fails DPM-E173, which does not blame the machine."""
    machine_id, driver, _nc, store, rounds, directory = world
    watches, t0 = PowerWatches(SCHEMA), datetime.now(UTC) - timedelta(seconds=30)  # requested 30 s ago
    rounds.watches, rounds.limits = watches, Limits(power_on_timeout=60)
    kwargs = {
        "directory": directory,
        "store": store,
        "watches": watches,
        "power": handlers.PowerOn(driver="fake", port=9, timeout=60.0),
        "clock": lambda: t0,
    }

    def failures() -> Awaitable[list[str]]:
        async def read() -> list[str]:
            return [r.event.code for r in await eventlog.read_all(limit=10_000) if isinstance(r.event, PowerOnFailed)]

        return read()

    rec = await _recorded(eventlog, stream_id(subjects.POWER, machine_id), PowerOnRequested(machine_id=machine_id))
    await world.handle(pool, handlers.power_on_requested, rec, **kwargs)
    assert await rounds.drain() == 1 and driver.woken == [str(machine_id)]
    sent = datetime.now(UTC)
    assert await PowerWatchdog(pool, eventlog, directory, watches, 60, lambda: t0 + timedelta(seconds=61)).expire() == 0
    assert await PowerWatchdog(pool, eventlog, directory, watches, 60, lambda: sent + timedelta(seconds=61)).expire()
    assert await failures() == ["DPM-E113"]  # woken, and silent: the remedy about Wake-on-LAN applies

    again = PowerOnRequested(machine_id=machine_id)
    rec = await _recorded(eventlog, stream_id(subjects.POWER, machine_id), again)
    await world.handle(pool, handlers.power_on_requested, rec, **kwargs)  # committed, and never drained
    assert await PowerWatchdog(pool, eventlog, directory, watches, 60, lambda: t0 + timedelta(seconds=61)).expire()
    codes = await failures()
    assert codes == ["DPM-E113", "DPM-E173"] and driver.woken == [str(machine_id)]


@dataclasses.dataclass(frozen=True)
class AwayDirectory(Directory):
    """The database goes away while the drain reads where to send the wake-up (an outage)."""

    outages: list[int] = dataclasses.field(default_factory=lambda: [1])

    async def power_target(self, conn, machine_id: uuid.UUID) -> PowerTarget | None:  # type: ignore[no-untyped-def]
        if self.outages[0]:
            self.outages[0] -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await super().power_target(conn, machine_id)


async def test_a_database_outage_during_a_wake_up_keeps_the_effect_instead_of_failing_the_machine(
    pool, eventlog, world
) -> None:
    """CI's fault matrix (PostgreSQL away 45 s) once failed an execution DPM-E116 because the drain
    took the outage for the machine's fault: now the effect stays pending and the next drain sends it."""
    machine_id, driver, _nc, store, rounds, _directory = world
    rounds.runner.directory = AwayDirectory(SCHEMA)
    x = await _queued_netboot(pool, store, machine_id)
    await rounds.tick()
    with pytest.raises(psycopg.OperationalError):
        await rounds.drain()  # the loop logs it and drains again on its next tick
    assert driver.woken == []
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is not ExecutionState.FAILED  # type: ignore[union-attr]
    assert await rounds.drain() == 1 and driver.woken == [str(machine_id)]
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is ExecutionState.WAITING_BOOT  # type: ignore[union-attr]
    assert not [r for r in await eventlog.read_all(limit=10_000) if isinstance(r.event, ExecutionFailed)]
