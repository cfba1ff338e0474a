"""pxe's read models are projections of the log (issue 13): rebuilt from position 0 they equal the live
ones; the DHCP listener's settings in memory follow the table, also when a rebuild leaves it older;
the "boot locally" check reads the netboot projection's checkpoint; and a deploy token is won once
per netboot request, so a cleared and re-requested netboot may go to the address the machine boots
from then."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dpm_pxe.adapters.readmodel import netboot_lag, pending_netboot
from dpm_pxe.adapters.state import DDL, SCHEMA, follow
from dpm_pxe.adapters.tokens import DDL as TOKENS_DDL
from dpm_pxe.adapters.tokens import DeployTokens
from dpm_pxe.domain.bootstate import BootState
from dpm_pxe.projections import BootSettings, Netboot
from dpm_runtime.directory import MachineDirectory
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.projection import Projection, ProjectionRunner, rebuild
from dpm_runtime.registry import Qualified
from dpm_runtime.testing import eventually
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    BootSettingsChanged,
    GroupDefined,
    GroupRenamed,
    MachineRegistered,
    NetbootCleared,
    NetbootRequested,
)
from dpm_schemas.events.boot import SETTINGS_KEY, DhcpMode
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration

MAC = "52:54:00:13:00:01"


async def append(eventlog, stream: str, *events) -> int:
    done = await eventlog.append(stream, ANY_VERSION, [NewEvent(e, Metadata.new(actor="test")) for e in events])
    return done.position


async def live(pool, eventlog, projection: Projection) -> ProjectionRunner:
    runner = ProjectionRunner(Qualified("pxe", projection), pool=pool, eventlog=eventlog)
    await runner.setup()
    while await runner.step():
        pass
    return runner


async def rows(pool, table: str) -> list[tuple]:
    async with pool.connection() as conn:
        return await (await conn.execute(f"SELECT * FROM {SCHEMA}.{table} ORDER BY 1".encode())).fetchall()


SETTINGS = stream_id(subjects.SETTING, SETTINGS_KEY)


async def _history(eventlog) -> tuple[uuid.UUID, uuid.UUID]:
    machine, execution = uuid.uuid4(), uuid.uuid4()
    group, run = stream_id(subjects.GROUP, "lab"), stream_id(subjects.EXECUTION, execution)
    await append(eventlog, group, GroupDefined(name="lab", subnet="10.0.0.0/24"))
    registered = MachineRegistered(machine_id=machine, name="pc1", macs=(MAC,), group="lab")
    await append(eventlog, stream_id(subjects.MACHINE, machine), registered)
    await append(eventlog, group, GroupRenamed(name="lab", new_name="lab-b"))
    await append(eventlog, SETTINGS, BootSettingsChanged(mode=DhcpMode.PROXY, server_ip="127.0.0.1"))
    await append(eventlog, run, NetbootRequested(machine_id=machine, execution_id=execution))
    await append(eventlog, run, NetbootCleared(machine_id=machine, execution_id=execution, reason="execution ended"))
    await append(eventlog, SETTINGS, BootSettingsChanged(mode=DhcpMode.OFF))
    await append(eventlog, run, NetbootRequested(machine_id=machine, execution_id=execution))
    return machine, execution


async def test_rebuilt_equals_live_and_memory_follows_the_table(pool, eventlog) -> None:
    async with pool.connection() as conn:
        for statement in DDL:
            await conn.execute(statement.encode())
    machine, execution = await _history(eventlog)
    projections = {"directory": MachineDirectory(SCHEMA), "boot_settings": BootSettings(), "netboot": Netboot()}
    runners = {name: await live(pool, eventlog, p) for name, p in projections.items()}
    tables = [t for p in projections.values() for t in p.tables]
    before = {t: await rows(pool, t) for t in tables}
    assert [r[4] for r in before["machine_directory"]] == ["lab-b"]  # the rename moved the machine
    pending = await pending_netboot_of(pool, machine)
    assert pending is not None and pending.execution_id == execution
    for p in projections.values():
        await rebuild(Qualified("pxe", p), pool=pool, eventlog=eventlog)
    assert {t: await rows(pool, t) for t in tables} == before

    state, stop = BootState(), asyncio.Event()
    task = asyncio.create_task(follow(state, pool, runners["boot_settings"], stop))
    try:
        await eventually(lambda: _mode(state), until=lambda m: m is DhcpMode.OFF, what="memory loads the table")
        first = next(rec for rec in await eventlog.read_all() if isinstance(rec.event, BootSettingsChanged))
        async with pool.connection() as conn:  # as a rebuild that set the last settings aside leaves it
            await conn.execute(f"DELETE FROM {SCHEMA}.boot_settings".encode())
            await BootSettings().apply(conn, SCHEMA, [first])
        await eventually(lambda: _mode(state), until=lambda m: m is DhcpMode.PROXY, what="memory follows it back")
        assert state.position == first.position and state.current.server_ip == "127.0.0.1"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def _mode(state: BootState) -> DhcpMode:
    return state.current.mode


async def pending_netboot_of(pool, machine: uuid.UUID):
    async with pool.connection() as conn:
        return await pending_netboot(conn, machine)


async def test_boot_locally_waits_for_the_netboot_projection(pool, eventlog) -> None:
    machine, execution = uuid.uuid4(), uuid.uuid4()
    runner = await live(pool, eventlog, Netboot())
    async with pool.connection() as conn:
        assert not await netboot_lag(conn)
    requested = NetbootRequested(machine_id=machine, execution_id=execution)
    await append(eventlog, stream_id(subjects.EXECUTION, execution), requested)
    async with pool.connection() as conn:
        assert await netboot_lag(conn)  # the request is in the log, not yet in pxe's table
    await runner.step()
    async with pool.connection() as conn:
        assert not await netboot_lag(conn)


async def test_a_deploy_token_is_won_once_per_netboot_request(pool, eventlog) -> None:
    async with pool.connection() as conn:
        for statement in [*DDL, *TOKENS_DDL]:
            await conn.execute(statement.encode())
    tokens = DeployTokens(pool, eventlog, key=b"k" * 32, idle=60)
    machine, execution = uuid.uuid4(), uuid.uuid4()
    first = await tokens.grant(MAC, machine, execution, "10.0.0.5", request=10)
    assert first.token is not None
    again = await tokens.grant(MAC, machine, execution, "10.0.0.5", request=10)
    assert again.token == first.token  # a firmware retry
    stolen = await tokens.grant(MAC, machine, execution, "10.0.0.6", request=10)
    assert stolen.token is None and "another client" in stolen.refused
    # the netboot was cleared and asked for again (position 20): the machine now boots from .6
    later = await tokens.grant(MAC, machine, execution, "10.0.0.6", request=20)
    assert later.token is not None and later.token != first.token
    assert (await tokens.grant(MAC, machine, execution, "10.0.0.5", request=20)).token is None
