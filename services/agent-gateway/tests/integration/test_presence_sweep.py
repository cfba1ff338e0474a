"""The presence sweep never takes a machine that is heartbeating for silent. Two races a loaded
gateway hit (1,000 agents, a burst of hellos holding the pool): a round that waited long for a
connection swept machines whose heartbeats were still in memory, and a flush that failed dropped
what it had heard. Real PostgreSQL; the machine's shared row is aged by hand instead of waiting."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from dpm_agent_gateway.adapters import store
from dpm_agent_gateway.adapters.sessions import Sessions
from dpm_agent_gateway.presence import Presence
from dpm_schemas.events import MachineWentOffline

pytestmark = pytest.mark.integration

TIMEOUT = 15.0


@pytest.fixture
async def presence(pool, eventlog) -> Presence:
    async with pool.connection() as conn:
        for statement in store.DDL:
            await conn.execute(statement.encode())
    sessions = Sessions(pool=pool, nc=None, period=1.0)  # type: ignore[arg-type]  # no hint is sent here
    return Presence(pool=pool, eventlog=eventlog, timeout=TIMEOUT, sessions=sessions)


async def online_since(pool, machine: uuid.UUID, seconds_ago: float) -> None:
    """A machine the shared row shows online, last flushed ``seconds_ago``."""
    async with pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {store.SCHEMA}.presence (machine_id, online, last_seen)"
            " VALUES (%s, true, now() - make_interval(secs => %s))",
            (machine, seconds_ago),
        )


async def offline_events(eventlog) -> list[uuid.UUID]:
    return [r.event.machine_id for r in await eventlog.read_all() if isinstance(r.event, MachineWentOffline)]


async def test_a_machine_heard_since_the_last_flush_is_not_swept(presence, pool, eventlog) -> None:
    heard, silent = uuid.uuid4(), uuid.uuid4()
    await online_since(pool, heard, TIMEOUT + 5)  # the round waited: its heartbeats are still in memory
    await online_since(pool, silent, TIMEOUT + 5)
    presence.heartbeat(heard)
    assert await presence.sweep() == 1
    assert await offline_events(eventlog) == [silent]


async def test_a_failed_flush_keeps_what_it_heard(presence, pool, eventlog) -> None:
    machine = uuid.uuid4()
    await online_since(pool, machine, TIMEOUT + 5)
    presence.heartbeat(machine)
    async with pool.connection() as conn:  # the round cannot write: its table is away for a moment
        await conn.execute(f"ALTER TABLE {store.SCHEMA}.presence RENAME TO presence_away")
    with pytest.raises(psycopg.errors.UndefinedTable):
        await presence.flush()
    assert presence.heard == {machine}
    async with pool.connection() as conn:
        await conn.execute(f"ALTER TABLE {store.SCHEMA}.presence_away RENAME TO presence")
    assert await presence.flush() == 1 and await presence.sweep() == 0
    assert await offline_events(eventlog) == []
