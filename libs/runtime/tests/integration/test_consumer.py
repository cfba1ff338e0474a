"""Consumer outcomes against real NATS and PostgreSQL: duplicates skipped, poison terminated and
kept, ``Retry`` redelivered, a handler that keeps failing terminated after ``max_deliver``."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider

from dpm_runtime.consumer import ConsumerRunner, ConsumerSpec, Poison, Retry
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing import eventually
from dpm_schemas import Metadata, NewEvent, RecordedEvent, subjects
from dpm_schemas.codec import encode_envelope
from dpm_schemas.events import GroupDefined, Probe

pytestmark = pytest.mark.integration


async def envelope(eventlog, seq: int) -> RecordedEvent:
    """A Probe appended to the log, as the log holds it (consumers handle only logged events)."""
    result = await eventlog.append("test-x", ANY_VERSION, [NewEvent(Probe(writer=0, seq=seq), Metadata.new())])
    return (await eventlog.read_all(after=result.position - 1, limit=1))[0]


async def publish(js, rec: RecordedEvent | bytes, msg_id: str | None = None) -> None:
    body = rec if isinstance(rec, bytes) else encode_envelope(rec)
    await js.publish(subjects.event_subject("test", "Probe"), body, headers={"Nats-Msg-Id": msg_id or uuid.uuid4().hex})


@pytest.fixture
async def effects(database):
    async with await psycopg.AsyncConnection.connect(database.admin_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE effects (seq int)")
        await conn.execute("GRANT INSERT, SELECT ON effects TO dpm_service")

    async def count() -> list[int]:
        async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
            return [r[0] for r in await (await conn.execute("SELECT seq FROM effects ORDER BY seq")).fetchall()]

    return count


async def run_consumer(nc, pool, handler, **spec_args):
    spec = ConsumerSpec(durable="test-effects", handlers={Probe: handler}, **spec_args)
    runner = ConsumerRunner(
        spec, js=nc.jetstream(), pool=pool, tracer=TracerProvider().get_tracer("t"), fetch_timeout=0.2
    )
    await runner.declare()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    return runner, stop, task


async def insert(rec, conn) -> None:
    await conn.execute("INSERT INTO effects (seq) VALUES (%s)", (rec.event.seq,))


async def test_a_redelivered_event_has_its_effect_once(nc, pool, effects, eventlog) -> None:
    runner, stop, task = await run_consumer(nc, pool, insert)
    rec = await envelope(eventlog, 7)
    await publish(nc.jetstream(), rec)
    await publish(nc.jetstream(), rec)  # the same event again under another message id: a redelivery
    await publish(nc.jetstream(), await envelope(eventlog, 8))
    await eventually(lambda: asyncio.sleep(0, runner.stats.handled + runner.stats.duplicates), until=lambda n: n == 3)
    assert await effects() == [7, 8]
    assert (runner.stats.handled, runner.stats.duplicates) == (2, 1)
    stop.set()
    await task


async def test_poison_is_terminated_kept_and_does_not_block(nc, pool, effects, database, eventlog) -> None:
    runner, stop, task = await run_consumer(nc, pool, insert)
    await publish(nc.jetstream(), b"\xc1 not msgpack")
    await publish(nc.jetstream(), await envelope(eventlog, 1))
    await eventually(effects, until=lambda rows: rows == [1])
    assert runner.stats.poisoned == 1
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        row = await (await conn.execute("SELECT consumer, reason FROM dpm_dead_letters")).fetchone()
    assert row[0] == "test-effects" and "undecodable" in row[1]
    stop.set()
    await task


async def test_retry_redelivers_and_handles_once(nc, pool, effects, eventlog) -> None:
    attempts: list[int] = []

    async def flaky(rec, conn) -> None:
        attempts.append(rec.event.seq)
        if len(attempts) < 3:
            raise Retry("not yet", delay=0.05)
        await insert(rec, conn)

    runner, stop, task = await run_consumer(nc, pool, flaky)
    await publish(nc.jetstream(), await envelope(eventlog, 5))
    await eventually(effects, until=lambda rows: rows == [5])
    assert attempts == [5, 5, 5] and runner.stats.retried == 2
    stop.set()
    await task


async def test_a_handler_that_keeps_failing_is_terminated_after_max_deliver(
    nc, pool, effects, database, eventlog
) -> None:
    async def broken(rec, conn) -> None:
        await insert(rec, conn)  # rolled back with the failure
        raise RuntimeError("boom")

    runner, stop, task = await run_consumer(nc, pool, broken, max_deliver=3, backoff=0.01)
    await publish(nc.jetstream(), await envelope(eventlog, 9))
    await eventually(lambda: asyncio.sleep(0, runner.stats.poisoned), until=lambda n: n == 1)
    assert await effects() == []
    stop.set()
    await task
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        row = await (await conn.execute("SELECT deliveries, reason FROM dpm_dead_letters")).fetchone()
    assert row[0] == 3 and "boom" in row[1]


async def test_poison_raised_by_a_handler_is_terminated_at_once(nc, pool, effects, eventlog) -> None:
    async def refuse(rec, conn) -> None:
        raise Poison("never valid")

    runner, stop, task = await run_consumer(nc, pool, refuse)
    await publish(nc.jetstream(), await envelope(eventlog, 3))
    await eventually(lambda: asyncio.sleep(0, runner.stats.poisoned), until=lambda n: n == 1)
    assert runner.stats.retried == 0
    stop.set()
    await task


async def test_a_message_whose_event_is_not_in_the_log_is_terminated_as_forged(
    nc, pool, effects, database, eventlog
) -> None:
    runner, stop, task = await run_consumer(nc, pool, insert)
    real = await envelope(eventlog, 2)
    forged = real._replace(event_id=uuid.uuid4(), event=Probe(writer=0, seq=666))  # same position, not logged
    await publish(nc.jetstream(), forged)
    await publish(nc.jetstream(), forged._replace(position=real.position + 1000))  # a position nobody holds
    await publish(nc.jetstream(), real)
    await eventually(effects, until=lambda rows: rows == [2])
    await eventually(lambda: asyncio.sleep(0, runner.stats.forged), until=lambda n: n == 2)
    assert runner.stats.handled == 1
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        reasons = [r[0] for r in await (await conn.execute("SELECT reason FROM dpm_dead_letters")).fetchall()]
    assert len(reasons) == 2 and all("DPM-E023" in r for r in reasons)
    stop.set()
    await task


async def test_a_message_that_claims_another_type_or_stream_than_the_log_is_terminated_as_forged(
    nc, pool, effects, database, eventlog
) -> None:
    """The message's type picks the handler: a logged event id sent under another type (or stream)
    would run that handler on an event it was never meant for (issue 12 item 2)."""
    runner, stop, task = await run_consumer(nc, pool, insert)
    appended = await eventlog.append("group-x", ANY_VERSION, [NewEvent(GroupDefined(name="lab"), Metadata.new())])
    group = (await eventlog.read_all(after=appended.position - 1, limit=1))[0]
    await publish(nc.jetstream(), group._replace(type="Probe", event=Probe(writer=0, seq=666)))  # another type
    real = await envelope(eventlog, 4)
    await publish(nc.jetstream(), real._replace(stream_id="test-elsewhere"))  # another stream
    await publish(nc.jetstream(), real)
    await eventually(effects, until=lambda rows: rows == [4])
    await eventually(lambda: asyncio.sleep(0, runner.stats.forged), until=lambda n: n == 2)
    assert (runner.stats.handled, runner.stats.retried) == (1, 0)
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        reasons = [r[0] for r in await (await conn.execute("SELECT reason FROM dpm_dead_letters")).fetchall()]
    assert len(reasons) == 2 and all("DPM-E026" in r for r in reasons), reasons
    assert any("GroupDefined on group-x@1" in r for r in reasons)
    stop.set()
    await task
