"""The handler kernel against real NATS and PostgreSQL: effects run only after the commit (never after
a rollback), ``ctx.append`` carries the cause's correlation, causation, actor and trace, a timer
round's ``unit_of_work`` does the same from stored metadata, and a handler that keeps asking for a
retry is dead-lettered instead of dropped."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from dpm_runtime.consumer import ConsumerRunner
from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.handlers import Ctx, Retry, Router, unit_of_work
from dpm_runtime.testing import eventually
from dpm_schemas import Metadata, NewEvent, RecordedEvent, subjects
from dpm_schemas.codec import encode_envelope
from dpm_schemas.events import Probe

pytestmark = pytest.mark.integration

TRACE = "0af7651916cd43dd8448eb211c80319c"
CAUSE_TRACEPARENT = f"00-{TRACE}-b7ad6b7169203331-01"


async def cause(eventlog: EventLog, seq: int) -> RecordedEvent:
    meta = Metadata(correlation_id=uuid.uuid4(), actor="alice", traceparent=CAUSE_TRACEPARENT)
    result = await eventlog.append("test-cause", ANY_VERSION, [NewEvent(Probe(writer=0, seq=seq), meta)])
    return (await eventlog.read_all(after=result.position - 1, limit=1))[0]


@contextlib.asynccontextmanager
async def running(nc, pool, tracer, router: Router, **deps) -> AsyncIterator[ConsumerRunner]:
    """The router's one consumer, running until the block ends (also when an assertion fails in it)."""
    (spec,) = router.bind(**deps)
    runner = ConsumerRunner(spec, js=nc.jetstream(), pool=pool, tracer=tracer, fetch_timeout=0.2)
    await runner.declare()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await task


async def publish(nc, rec: RecordedEvent) -> None:
    headers = {"Nats-Msg-Id": uuid.uuid4().hex, "traceparent": rec.metadata.traceparent or ""}
    await nc.jetstream().publish(subjects.event_subject("test", "Probe"), encode_envelope(rec), headers=headers)


def react(seen: list[str], *, fail: bool = False) -> Router:
    """A router whose handler appends a reaction, queues an effect that records whether the reaction
    is committed (read on another connection), and then fails if asked to."""
    router = Router(service="test")
    router.consumer("kernel", max_deliver=2, backoff=0.01)

    @router.handles(Probe, durable="kernel")
    async def probe(e: Probe, ctx: Ctx, *, eventlog: EventLog) -> None:
        stream = f"test-reaction{e.seq}"
        await ctx.append(stream, [Probe(writer=1, seq=e.seq)], expected=0)

        async def effect() -> None:
            committed = await eventlog.read_stream(stream)  # the pool's own connection: committed rows only
            seen.append("committed" if committed else "uncommitted")

        ctx.after_commit(effect)
        if fail:
            raise RuntimeError("after the append")

    return router


async def test_effects_run_after_the_commit_and_appends_carry_the_causes_metadata(nc, pool, eventlog, tracing) -> None:
    provider, exporter = tracing
    seen: list[str] = []
    async with running(nc, pool, provider.get_tracer("t"), react(seen), eventlog=eventlog) as runner:
        rec = await cause(eventlog, 1)
        await publish(nc, rec)
        await eventually(lambda: asyncio.sleep(0, list(seen)), until=lambda s: s == ["committed"])
        (reaction,) = await eventlog.read_stream("test-reaction1")
        assert reaction.metadata.correlation_id == rec.metadata.correlation_id
        assert reaction.metadata.causation_id == rec.event_id
        assert reaction.metadata.actor == "alice"
        span = next(s for s in exporter.get_finished_spans() if s.name == "handle Probe")
        assert reaction.metadata.traceparent == f"00-{TRACE}-{span.context.span_id:016x}-01"  # the handler's span
        assert span.parent is not None and span.parent.trace_id == int(TRACE, 16)
        assert runner.stats.handled == 1 and runner.stats.effects_failed == 0


async def test_a_rolled_back_handler_runs_no_effect_and_appends_nothing(nc, pool, eventlog, tracing, database) -> None:
    provider, _ = tracing
    seen: list[str] = []
    router = react(seen, fail=True)
    async with running(nc, pool, provider.get_tracer("t"), router, eventlog=eventlog) as runner:
        await publish(nc, await cause(eventlog, 2))
        await eventually(lambda: asyncio.sleep(0, runner.stats.poisoned), until=lambda n: n == 1)
        assert seen == []  # two deliveries, two rollbacks, no effect
        assert await eventlog.read_stream("test-reaction2") == []


async def test_a_failing_effect_is_logged_and_the_message_still_acked(nc, pool, eventlog, tracing, caplog) -> None:
    provider, _ = tracing
    router = Router(service="test")

    @router.handles(Probe, durable="kernel")
    async def probe(e: Probe, ctx: Ctx) -> None:
        async def unreachable_agent() -> None:
            raise ConnectionRefusedError("agent down")

        ctx.after_commit(unreachable_agent)

    async with running(nc, pool, provider.get_tracer("t"), router) as runner:
        await publish(nc, await cause(eventlog, 3))
        await eventually(lambda: asyncio.sleep(0, runner.stats.effects_failed), until=lambda n: n == 1)
        assert runner.stats.handled == 1 and runner.stats.retried == 0
        assert any("DPM-E035" in r.getMessage() and "unreachable_agent" in r.getMessage() for r in caplog.records)


async def test_a_handler_that_keeps_asking_for_a_retry_is_dead_lettered(nc, pool, eventlog, tracing, database) -> None:
    provider, _ = tracing
    router = Router(service="test")
    router.consumer("kernel", max_deliver=3)
    attempts: list[int] = []

    @router.handles(Probe, durable="kernel")
    async def probe(e: Probe, ctx: Ctx) -> None:
        attempts.append(e.seq)
        raise Retry("the image is not there yet", delay=0.01)

    async with running(nc, pool, provider.get_tracer("t"), router) as runner:
        rec = await cause(eventlog, 4)
        await publish(nc, rec)
        await eventually(lambda: asyncio.sleep(0, runner.stats.poisoned), until=lambda n: n == 1)
    assert attempts == [4, 4, 4] and runner.stats.retried == 2
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        row = await (await conn.execute("SELECT position, deliveries, reason FROM dpm_dead_letters")).fetchone()
    assert row is not None and row[0] == rec.position and row[1] == 3
    assert "DPM-E034" in row[2] and "not there yet" in row[2]


async def test_a_timer_round_continues_the_stored_conversation_and_runs_effects_only_on_commit(
    pool, eventlog, tracing
) -> None:
    provider, exporter = tracing
    stored = Metadata(
        correlation_id=uuid.uuid4(), causation_id=uuid.uuid4(), actor="bob", traceparent=CAUSE_TRACEPARENT
    )
    ran: list[str] = []

    async def wake() -> None:
        ran.append("wake")

    tracer = provider.get_tracer("t")
    async with unit_of_work(pool, eventlog, cause=stored, actor="scheduler", tracer=tracer, name="tick") as ctx:
        await ctx.append("test-round", [Probe(writer=2, seq=1)], expected=0)
        ctx.after_commit(wake)
        assert ran == []  # not before the commit
    assert ran == ["wake"]
    (rec,) = await eventlog.read_stream("test-round")
    assert (rec.metadata.correlation_id, rec.metadata.causation_id) == (stored.correlation_id, stored.causation_id)
    assert rec.metadata.actor == "scheduler"
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "tick"]
    assert rec.metadata.traceparent == f"00-{TRACE}-{span.context.span_id:016x}-01"

    with pytest.raises(RuntimeError):
        async with unit_of_work(pool, eventlog, cause=stored) as ctx:
            await ctx.append("test-round", [Probe(writer=2, seq=2)], expected=1)
            ctx.after_commit(wake)
            raise RuntimeError("the round failed")
    assert ran == ["wake"] and len(await eventlog.read_stream("test-round")) == 1
