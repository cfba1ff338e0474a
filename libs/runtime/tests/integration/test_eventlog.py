"""The event log against a real PostgreSQL: optimistic concurrency, ordering, append-only."""

from __future__ import annotations

import asyncio
import random
import uuid

import psycopg
import pytest

from dpm_runtime.eventlog import ANY_VERSION, NO_STREAM, EventLog, StreamConflict
from dpm_schemas import Metadata, NewEvent
from dpm_schemas.errors import DpmError
from dpm_schemas.events import ChunkSent, Probe

pytestmark = pytest.mark.integration


def probe(writer: int = 0, seq: int = 0) -> NewEvent:
    return NewEvent(Probe(writer=writer, seq=seq), Metadata.new(actor="test"))


async def test_append_then_read_stream_round_trips(eventlog: EventLog) -> None:
    result = await eventlog.append("test-a", NO_STREAM, [probe(seq=1), probe(seq=2)])
    assert (result.stream_version, result.position) == (2, 2)
    events = await eventlog.read_stream("test-a")
    assert [e.event for e in events] == [Probe(writer=0, seq=1), Probe(writer=0, seq=2)]
    assert [e.stream_version for e in events] == [1, 2]
    assert events[0].metadata.actor == "test"


async def test_two_appends_at_the_same_expected_version_one_wins(eventlog: EventLog) -> None:
    await eventlog.append("test-b", NO_STREAM, [probe()])
    outcomes = await asyncio.gather(
        eventlog.append("test-b", 1, [probe(seq=1)]),
        eventlog.append("test-b", 1, [probe(seq=2)]),
        return_exceptions=True,
    )
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    conflicts = [o for o in outcomes if isinstance(o, StreamConflict)]
    assert len(wins) == 1 and len(conflicts) == 1
    assert conflicts[0].code == "DPM-E010" and conflicts[0].actual == 2 and conflicts[0].expected == 1
    assert len(await eventlog.read_stream("test-b")) == 2


async def test_expected_version_is_checked_and_any_version_skips_the_check(eventlog: EventLog) -> None:
    with pytest.raises(StreamConflict):
        await eventlog.append("test-c", 3, [probe()])
    await eventlog.append("test-c", ANY_VERSION, [probe()])
    await eventlog.append("test-c", ANY_VERSION, [probe()])
    with pytest.raises(StreamConflict):
        await eventlog.append("test-c", NO_STREAM, [probe()])
    assert len(await eventlog.read_stream("test-c")) == 2


async def test_transient_signals_are_refused(eventlog: EventLog) -> None:
    sent = ChunkSent(transfer_id=uuid.uuid4(), chunk_index=0, bytes_done=1, bytes_total=2, rate_bps=1.0)
    with pytest.raises(DpmError) as err:
        await eventlog.append("test-d", ANY_VERSION, [NewEvent(sent, Metadata.new())])
    assert err.value.code == "DPM-E011"


async def test_service_role_cannot_change_or_insert_events_directly(eventlog: EventLog, database) -> None:
    await eventlog.append("test-e", NO_STREAM, [probe()])
    async with await psycopg.AsyncConnection.connect(database.service_url, autocommit=True) as conn:
        for sql in (
            "UPDATE events SET type = 'x'",
            "DELETE FROM events",
            "TRUNCATE events",
            "INSERT INTO events SELECT * FROM events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(sql)
    async with await psycopg.AsyncConnection.connect(database.admin_url, autocommit=True) as owner:
        with pytest.raises(psycopg.Error, match="append-only"):
            await owner.execute("DELETE FROM events")


async def test_migrations_are_idempotent(database) -> None:
    from dpm_runtime.migrations import migrate

    assert await migrate(database.admin_url) == []


async def test_read_all_in_batches_and_by_type(eventlog: EventLog) -> None:
    for i in range(25):
        await eventlog.append(f"test-{i % 3}", ANY_VERSION, [probe(seq=i)])
    positions = [e.position async for batch in eventlog.batches(batch_size=7) for e in batch]
    assert positions == list(range(1, 26))
    assert await eventlog.head() == 25
    assert await eventlog.read_all(types=["MachineRegistered"]) == []


async def test_concurrent_writers_positions_are_gap_free_in_commit_order(eventlog: EventLog, pool) -> None:
    """8 writers append to random streams while a reader tails: it never sees a position go back,
    and a position it skipped never appears later."""
    stop = asyncio.Event()
    seen: list[int] = []

    async def writer(n: int) -> int:
        count = 0
        rng = random.Random(n)
        while not stop.is_set():
            batch = [probe(n, count + k) for k in range(rng.choice([1, 1, 1, 3]))]
            await eventlog.append(f"test-{rng.randrange(50)}", ANY_VERSION, batch)
            count += len(batch)
        return count

    async def reader() -> None:
        after = 0
        while True:
            batch = await eventlog.read_all(after=after, limit=500)
            for e in batch:
                assert e.position == after + 1, f"reader at {after} then saw {e.position}"
                after = e.position
            seen.extend(e.position for e in batch)
            if stop.is_set() and not batch and after == await eventlog.head():
                return
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(writer(n)) for n in range(8)]
    read = asyncio.create_task(reader())
    await asyncio.sleep(3)
    stop.set()
    written = sum(await asyncio.gather(*tasks))
    await asyncio.wait_for(read, 30)
    assert written > 100
    assert seen == list(range(1, written + 1))
