"""A SIGKILL exactly between the commit of a wake-up and its magic packet (issue 21, item 1).

Three machines run a disk-check (network boot): the start round commits ExecutionStarted,
NetbootRequested and a Wake into the outbox for each. The scheduler runs with the test-only crash
point ``DPM_SCHEDULER_TEST_CRASH_POINT=before-wake``: its drain leases the first wake-up and the
process SIGKILLs itself before sending it. Nothing was sent (a UDP listener on loopback, where the
machines' group sends its magic packets, heard nothing), the wakes are in the outbox. A scheduler
started again without the crash point sends every one of them; each machine then network-boots (the
MachineBooted pxe would record), its step reports completion, and every execution completes once,
with the wake-up recorded as sent (so a later watchdog would say DPM-E112, not DPM-E173).
Real PostgreSQL and nats-server; the scheduler is a process of its own."""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import uuid
from ipaddress import IPv4Network

import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    GroupDefined,
    MachineBooted,
    MachineRegistered,
    NetbootRequested,
    ScenarioRunRequested,
    StepReported,
    StepRequested,
)
from dpm_schemas.events.boot import Arch, BootStage
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MACHINES = 3
MACS = [f"52:54:00:21:01:{i:02x}" for i in range(MACHINES)]


class MagicListener(asyncio.DatagramProtocol):
    """The machines' NICs on loopback: counts the magic packets per MAC (WOL to 127.255.255.255)."""

    def __init__(self) -> None:
        self.woken: collections.Counter[str] = collections.Counter()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for mac in MACS:
            if data == b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16:
                self.woken[mac] += 1


async def append(eventlog, stream: str, event: object, actor: str = "test") -> None:  # type: ignore[no-untyped-def]
    await eventlog.append(stream, ANY_VERSION, [NewEvent(event, Metadata.new(actor=actor))])


async def seed(eventlog) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    await append(eventlog, "group-loop", GroupDefined(name="loop", subnet=IPv4Network("127.0.0.0/8")))
    machines = [uuid.uuid4() for _ in MACS]
    for i, (machine_id, mac) in enumerate(zip(machines, MACS, strict=True)):
        registered = MachineRegistered(machine_id=machine_id, name=f"w{i}", macs=(mac,), group="loop")
        await append(eventlog, stream_id(subjects.MACHINE, machine_id), registered)
    spec = ScenarioSpec(kind=ScenarioKind.DISK_CHECK)
    run = ScenarioRunRequested(
        run_id=uuid.uuid4(), scenario_id=uuid.uuid4(), revision=1, name="check", spec=spec, machine_ids=tuple(machines)
    )
    await append(eventlog, stream_id(subjects.ASSIGNMENT, run.run_id), run)
    return machines


async def rows(pool, sql: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    async with pool.connection() as conn:
        return list(await (await conn.execute(sql)).fetchall())


async def recorded(eventlog, kind: type) -> list:  # type: ignore[no-untyped-def]
    return [r.event for r in await eventlog.read_all(limit=100_000) if isinstance(r.event, kind)]


def start(env: dict[str, str], log_path) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    with open(log_path, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "dpm_scheduler"], env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_sigkill_between_the_commit_of_a_wake_and_its_magic_packet_then_woken_after_restart(
    pool, eventlog, service_env, tmp_path
) -> None:
    wol = free_port(udp=True)
    listener = MagicListener()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: listener, local_addr=("0.0.0.0", wol), allow_broadcast=True
    )
    env = {
        **service_env,
        "DPM_SCHEDULER_PORT": str(free_port()),
        "DPM_SCHEDULER_WOL_PORT": str(wol),
        "DPM_SCHEDULER_WOL_REPEATS": "1",
        "DPM_SCHEDULER_POWER_ON_INTERVAL": "0",
        "DPM_SCHEDULER_CONCURRENCY": str(MACHINES),
        "DPM_SCHEDULER_TICK": "0.1",
    }
    try:
        machines = await seed(eventlog)
        first = start({**env, "DPM_SCHEDULER_TEST_CRASH_POINT": "before-wake"}, tmp_path / "scheduler-1.log")
        try:
            code = await asyncio.to_thread(first.wait, 60)
        finally:
            if first.poll() is None:
                first.kill()
        log1 = (tmp_path / "scheduler-1.log").read_text()
        assert code == -9 and "crash point before-wake reached" in log1, log1[-3000:]

        # exactly between the commit and the packet: decided and committed, nothing sent
        await asyncio.sleep(0.5)  # a packet in flight would have arrived by now
        assert not listener.woken, "a magic packet left before the crash point"
        assert len(await recorded(eventlog, ExecutionStarted)) == MACHINES
        assert len(await recorded(eventlog, NetbootRequested)) == MACHINES
        assert await rows(pool, "SELECT kind FROM scheduler.effects") == [("wake",)] * MACHINES
        waiting = await rows(pool, "SELECT state, woken_at FROM scheduler.executions")
        assert waiting == [("waiting_boot", None)] * MACHINES

        second = start(env, tmp_path / "scheduler-2.log")
        try:
            await eventually(
                lambda: asyncio.sleep(0, set(listener.woken)), until=lambda w: w == set(MACS), timeout=60,
                what="every machine woken after the restart",
            )  # fmt: skip
            for mac in MACS:  # each network-boots into the deploy environment, as pxe records it
                booted = MachineBooted(mac=mac, arch=Arch.BIOS_X86, stage=BootStage.ROM)
                await append(eventlog, stream_id(subjects.BOOT, mac), booted, actor="pxe")
            steps = await eventually(
                lambda: recorded(eventlog, StepRequested), until=lambda s: len(s) == MACHINES, what="steps requested"
            )
            for step in steps:
                done = StepReported(execution_id=step.execution_id, step=step.step, status=StepStatus.COMPLETED)
                await append(eventlog, stream_id(subjects.STEP, step.execution_id), done, actor="deploy")
            completed = await eventually(
                lambda: recorded(eventlog, ExecutionCompleted), until=lambda c: len(c) >= MACHINES, what="completed"
            )
            await eventually(
                lambda: rows(pool, "SELECT 1 FROM scheduler.effects"), until=lambda r: r == [], what="outbox empty"
            )
        finally:
            second.terminate()
            await asyncio.to_thread(second.wait, 30)
    finally:
        transport.close()

    assert sorted(e.machine_id for e in completed) == sorted(machines)  # each completed, once
    assert not await recorded(eventlog, ExecutionFailed)
    assert all(n >= 1 for n in listener.woken.values())
    marks = await rows(pool, "SELECT state, woken_at IS NOT NULL FROM scheduler.executions")
    assert marks == [("completed", True)] * MACHINES  # the wake-up is recorded as sent
    print(f"\nkilled before the first of {MACHINES} committed wake-ups; after the restart: {dict(listener.woken)}")
