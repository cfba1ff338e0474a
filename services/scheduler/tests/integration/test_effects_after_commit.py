"""No Wake-on-LAN and no shutdown is sent from a transaction that rolls back (issue 13): the
decisions of the consumer reactions and the rounds put their effects into the outbox of their own
transaction; only the drain, after the commit, sends them. Real PostgreSQL; the power driver and
the agent's NATS are fakes that record what would have left the server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import nats.errors
import pytest

from dpm_runtime.directory import directory_ddl
from dpm_scenarios import ExecutionState
from dpm_scheduler import handlers, powerwatch
from dpm_scheduler.adapters import effects_sql, executions_sql
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.driver import PowerTarget
from dpm_scheduler.adapters.effects_sql import Outbox
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.adapters.power import EffectRunner
from dpm_scheduler.adapters.wol import Spacing
from dpm_scheduler.domain.execution import Execution, Limits
from dpm_scheduler.rounds import Rounds
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import ExecutionCompleted, PowerOnRequested, StepReported
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
            *powerwatch.watch_ddl(SCHEMA),
            *executions_sql.ddl(SCHEMA),
            *effects_sql.ddl(SCHEMA),
        ]:
            await conn.execute(statement)
        machine_id = uuid.uuid4()
        await conn.execute(
            f'INSERT INTO "{SCHEMA}".machine_directory (machine_id, name, macs, position) VALUES (%s, %s, %s, 1)',
            (machine_id, "pc1", ["52:54:00:00:00:01"]),
        )
    driver, fake_nc = FakeDriver(), FakeNats()
    directory = Directory(SCHEMA)
    store = ExecutionStore(eventlog, SCHEMA, Outbox(SCHEMA))
    runner = EffectRunner(pool, directory, driver, Spacing(0), fake_nc)  # type: ignore[arg-type]
    rounds = Rounds(pool, eventlog, store, directory, runner, lambda: datetime.now(UTC), Limits())
    return machine_id, driver, fake_nc, store, rounds, directory


async def _recorded(eventlog, stream: str, event: object):  # type: ignore[no-untyped-def]
    await eventlog.append(stream, None, [NewEvent(event, Metadata.new(actor="test"))])  # type: ignore[arg-type]
    return next(r for r in await eventlog.read_all(limit=10_000) if r.event == event)


async def test_an_operators_wake_from_a_rolled_back_transaction_is_never_sent(pool, eventlog, world) -> None:
    machine_id, driver, _nc, _store, rounds, directory = world
    rec = await _recorded(eventlog, stream_id(subjects.POWER, machine_id), PowerOnRequested(machine_id=machine_id))
    kwargs = {
        "directory": directory,
        "outbox": rounds.store.outbox,
        "eventlog": eventlog,
        "driver_name": "fake",
        "port": 9,
        "timeout": 60.0,
        "clock": lambda: datetime.now(UTC),
    }
    with pytest.raises(Rollback):
        async with pool.connection() as conn, conn.transaction():
            await powerwatch.power_on_requested(rec, conn, **kwargs)
            raise Rollback
    assert await rounds.drain() == 0 and driver.woken == []  # nothing was sent, nothing is pending

    async with pool.connection() as conn, conn.transaction():  # the same reaction, committed
        await powerwatch.power_on_requested(rec, conn, **kwargs)
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
        async with pool.connection() as conn, conn.transaction():
            await handlers.step_reported(rec, conn, **deps)
            raise Rollback
    assert await rounds.drain() == 0 and fake_nc.commands == []
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is ExecutionState.RUNNING  # type: ignore[union-attr]

    async with pool.connection() as conn, conn.transaction():
        await handlers.step_reported(rec, conn, **deps)
    assert fake_nc.commands == []
    assert await rounds.drain() == 1 and fake_nc.commands == [subjects.agent_command(machine_id)]
    async with pool.connection() as conn:
        assert (await store.get(conn, x.execution_id)).state is ExecutionState.COMPLETED  # type: ignore[union-attr]
    (done,) = [r for r in await eventlog.read_all(limit=10_000) if isinstance(r.event, ExecutionCompleted)]
    assert done.event.power_off == "DPM-E120"  # the agent's answer, recorded after the commit
    assert done.metadata.correlation_id == x.correlation_id  # the run's conversation, on a timer path too
