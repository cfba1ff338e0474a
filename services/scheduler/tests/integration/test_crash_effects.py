"""SIGKILL the scheduler between commit and effect (issue 13): 50 machines run a simulated scenario
with "power off at end", so each execution commits a shutdown into the effect outbox and waits for
the agent's answer. A fake agent answers the first shutdowns, then holds the next one unanswered;
the scheduler process is killed while that command is in flight and the outbox still holds
committed, unrun shutdowns. After a restart every machine gets its shutdown at least once (the one
in flight: twice), every execution completes exactly once with the agent's answer, and the outbox
is empty. Real PostgreSQL and nats-server; the scheduler is a process of its own."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import uuid

import httpx
import pytest

from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_scenarios import ExecutionState
from dpm_schemas import Metadata, NewEvent, agent_protocol, subjects
from dpm_schemas.agent_protocol import Command, CommandResult
from dpm_schemas.events import ExecutionCompleted, ExecutionFailed, MachineRegistered, ScenarioRunRequested
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MACHINES = 50
ANSWERED = 10  # shutdowns the agent answers before it holds one


class FakeAgents:
    """Every machine's agent on one subscription: records each shutdown; answers ``ANSWERED`` of
    them, then leaves the next ones unanswered until ``release``."""

    def __init__(self) -> None:
        self.received: collections.Counter[str] = collections.Counter()
        self.released = False
        self.answered = 0

    async def answer(self, msg) -> None:  # type: ignore[no-untyped-def]
        cmd = agent_protocol.decode(msg.data)
        assert isinstance(cmd, Command)
        self.received[msg.subject.split(".")[-2]] += 1  # dpm.cmd.agent.<machine>.<action>
        if self.released or self.answered < ANSWERED:
            self.answered += 1
            await msg.respond(agent_protocol.encode(CommandResult(id=cmd.id, ok=True)))


def start_scheduler(env: dict[str, str], log) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    return subprocess.Popen([sys.executable, "-m", "dpm_scheduler"], env=env, stdout=log, stderr=subprocess.STDOUT)


async def ready(port: int) -> None:
    async with httpx.AsyncClient() as http:

        async def probe() -> bool:
            try:
                return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(probe, timeout=30, what="scheduler ready")


async def pending_effects(pool) -> int:  # type: ignore[no-untyped-def]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM scheduler.effects")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def seed(eventlog) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    """50 registered machines and a run of a simulated scenario that powers them off at the end."""
    machines = [uuid.uuid4() for _ in range(MACHINES)]
    for i, machine_id in enumerate(machines):
        registered = MachineRegistered(machine_id=machine_id, name=f"k{i:03d}", macs=(f"52:54:00:dd:00:{i:02x}",))
        meta = Metadata.new(actor="test")
        await eventlog.append(stream_id(subjects.MACHINE, machine_id), None, [NewEvent(registered, meta)])
    spec = ScenarioSpec(kind=ScenarioKind.SIMULATED, params={"seconds": "0.2"}, power_off_at_end=True)
    run = ScenarioRunRequested(
        run_id=uuid.uuid4(), scenario_id=uuid.uuid4(), revision=1, name="off", spec=spec, machine_ids=tuple(machines)
    )
    await eventlog.append(stream_id(subjects.ASSIGNMENT, run.run_id), None, [NewEvent(run, Metadata.new(actor="test"))])
    return machines


async def test_sigkill_between_commit_and_effect_then_every_shutdown_happens_and_completes_once(
    pool, eventlog, nc, service_env, tmp_path
) -> None:
    port = free_port()
    env = {
        **service_env,
        "DPM_SCHEDULER_PORT": str(port),
        "DPM_SCHEDULER_CONCURRENCY": str(MACHINES),
        "DPM_SCHEDULER_TICK": "0.1",
    }
    agents = FakeAgents()
    await nc.subscribe(subjects.agent_command("*", "*"), cb=agents.answer)
    machines = await seed(eventlog)

    with open(tmp_path / "scheduler-1.log", "wb") as out:
        first = start_scheduler(env, out)
    try:
        await ready(port)
        await eventually(
            lambda: asyncio.sleep(0, sum(agents.received.values())),
            until=lambda n: n > ANSWERED,
            timeout=60,
            what="a shutdown in flight, unanswered",
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    left = await pending_effects(pool)
    assert left > 0, "the outbox was empty at the kill; nothing was tested"
    sent_before = sum(agents.received.values())

    agents.released = True
    with open(tmp_path / "scheduler-2.log", "wb") as out:
        second = start_scheduler(env, out)
    try:

        async def completions() -> list:
            return [r for r in await eventlog.read_all(limit=100_000) if isinstance(r.event, ExecutionCompleted)]

        done = await eventually(completions, until=lambda c: len(c) >= MACHINES, timeout=120, what="every completion")
        await eventually(lambda: pending_effects(pool), until=lambda n: n == 0, timeout=30, what="an empty outbox")
    finally:
        second.terminate()
        second.wait(30)

    assert {str(m) for m in machines} == set(agents.received), "a machine never got its shutdown"
    assert max(agents.received.values()) >= 2, "the shutdown in flight at the kill was not repeated"
    per_execution = collections.Counter(r.event.execution_id for r in done)
    assert len(per_execution) == MACHINES and set(per_execution.values()) == {1}, "an execution completed twice"
    assert {r.event.power_off for r in done} == {"sent"}  # every machine answered its (last) shutdown
    assert not [r for r in await eventlog.read_all(limit=100_000) if isinstance(r.event, ExecutionFailed)]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT DISTINCT state FROM scheduler.executions")
        assert [r[0] for r in await cur.fetchall()] == [ExecutionState.COMPLETED.value]
    print(f"\nkilled with {left} effect(s) pending, {sent_before} shutdown(s) sent; all {MACHINES} completed once")
