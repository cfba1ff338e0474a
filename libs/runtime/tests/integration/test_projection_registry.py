"""Projections by full name, woken by the log's NOTIFY, and rebuilds asked of the service that owns
them: a service registers "<service>.<name>" in ``dpm_projections``; a request in
``dpm_rebuild_requests`` wakes that service's ``RebuildWorker``, which finishes it with the figures
(done) or the error (failed); a request left running by a replica that died is failed as interrupted.
The 0003 migration moves the checkpoints and quarantine entries of short names to full names."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from importlib import resources

import psycopg
import pytest

from dpm_runtime import rebuilds, registry, wake
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_runtime.projection import ProjectionRunner, checkpoint_key
from dpm_runtime.testing import eventually
from dpm_runtime.testing.fixtures import Database
from dpm_schemas import Metadata, NewEvent
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.errors import DpmError
from dpm_schemas.events import Probe

pytestmark = pytest.mark.integration

POLL = 60.0  # far longer than any wait below: what happens in time was woken by a NOTIFY


class Seen:
    name = "seen"
    schema = "rtest"
    tables = ("seen",)
    event_types = ("Probe",)

    def ddl(self, schema: str) -> str:
        return f'CREATE TABLE IF NOT EXISTS "{schema}".seen (seq int PRIMARY KEY);'

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            assert isinstance(rec.event, Probe)
            await conn.execute(f'INSERT INTO "{schema}".seen VALUES (%s) ON CONFLICT DO NOTHING', (rec.event.seq,))


async def append(eventlog: EventLog, *seqs: int) -> int:
    news = [NewEvent(Probe(writer=0, seq=s), Metadata.new(actor="test")) for s in seqs]
    return (await eventlog.append("probe-r", ANY_VERSION, news)).position


@pytest.fixture
async def waker(database: Database) -> AsyncIterator[wake.Waker]:
    w = wake.Waker(database.service_url, name="rtest")
    events = w.subscribe(wake.EVENTS)
    task = asyncio.create_task(w.run())
    await eventually(lambda: asyncio.sleep(0, w.listening), what="LISTEN")
    events.clear()
    yield w
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_runner_registers_its_full_name_and_wakes_on_notify(pool, eventlog: EventLog, waker) -> None:
    runner = ProjectionRunner(
        registry.Qualified("svc", Seen()),
        pool=pool,
        eventlog=eventlog,
        idle_poll=POLL,
        wake=waker.subscribe(wake.EVENTS),
    )
    await runner.setup()
    async with pool.connection() as conn:
        found = await registry.lookup(conn, "svc.seen")
        assert found == registry.Registered(name="svc.seen", service="svc", position=0, quarantined=0)
        cur = await conn.execute("SELECT tables, event_types FROM dpm_projections WHERE name = 'svc.seen'")
        assert await cur.fetchone() == (["seen"], ["Probe"])
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.sleep(0.2)  # the runner is idle now, for POLL seconds unless woken
        position = await append(eventlog, 1, 2)
        assert await runner.wait_for(position, timeout=5)
        async with pool.connection() as conn:
            assert (await registry.lookup(conn, "svc.seen")) == registry.Registered("svc.seen", "svc", position, 0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_rebuild_request_is_carried_out_by_the_owning_service(pool, eventlog: EventLog, waker) -> None:
    runner = ProjectionRunner(registry.Qualified("svc", Seen()), pool=pool, eventlog=eventlog)
    await runner.setup()
    position = await append(eventlog, 1, 2, 3)
    worker = rebuilds.RebuildWorker(
        "svc", {"seen": runner}, pool=pool, eventlog=eventlog, wake=waker.subscribe(wake.REBUILDS), poll=POLL
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.2)  # idle, for POLL seconds unless woken
        async with pool.connection() as conn:
            asked = await rebuilds.ask(conn, "svc.seen", "svc", "otto")
            again = await rebuilds.ask(conn, "svc.seen", "svc", "vera")
            assert asked.status in ("pending", "running") and again.id == asked.id  # one open per projection

            async def state() -> rebuilds.Request:
                async with pool.connection() as c:
                    return await rebuilds.get(c, asked.id)

            done = await eventually(state, until=lambda r: r.status == "done", what="rebuilt", timeout=10)
            assert (done.events, done.position, done.quarantined, done.error) == (3, position, 0, None)
            assert done.requested_by == "otto" and done.finished_at is not None
            gone = await rebuilds.ask(conn, "svc.gone", "svc", "otto")  # not (or no longer) this service's
            failed = await eventually(lambda: rebuilds.get(conn, gone.id), until=lambda r: r.status == "failed")
            assert failed.error is not None and "svc.gone" in failed.error
            with pytest.raises(DpmError) as unknown:
                await rebuilds.get(conn, uuid.uuid4())
            assert unknown.value.code == "DPM-E036"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_request_left_running_is_failed_as_interrupted(pool, eventlog: EventLog) -> None:
    runner = ProjectionRunner(registry.Qualified("svc", Seen()), pool=pool, eventlog=eventlog)
    await runner.setup()
    left = uuid.uuid4()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO dpm_rebuild_requests (id, projection, service, status, requested_by, started_at)"
            " VALUES (%s, 'svc.seen', 'svc', 'running', 'otto', now())",
            (left,),
        )
        worker = rebuilds.RebuildWorker("svc", {"seen": runner}, pool=pool, eventlog=eventlog)
        assert await worker.serve() == 0
        interrupted = await rebuilds.get(conn, left)
        assert interrupted.status == "failed" and "interrupted" in (interrupted.error or "")
        other = await rebuilds.ask(conn, "svc.seen", "other-service", "otto")  # addressed to another service
        assert await worker.serve() == 0 and (await rebuilds.get(conn, other.id)).status == "pending"


async def test_the_migration_moves_short_names_to_full_names(database: Database) -> None:
    sql = resources.files("dpm_runtime.sql").joinpath("0003_projection_registry.sql").read_text()
    async with await psycopg.AsyncConnection.connect(database.admin_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO dpm_checkpoints (name, position) VALUES ('projection:machines', 7),"
            " ('projection:stored_images', 5), ('projection:directory', 3)"
        )
        await conn.execute(
            "INSERT INTO dpm_quarantine (projection, position, type, error) VALUES ('accounts', 4, 'T', 'e')"
        )
        async with conn.transaction():
            await conn.execute(sql.encode())  # idempotent DDL: as on a database migrated before full names
        cur = await conn.execute("SELECT name, position FROM dpm_checkpoints WHERE name LIKE 'projection:%' ORDER BY 1")
        assert await cur.fetchall() == [
            (checkpoint_key("api.machines"), 7),
            ("projection:directory", 3),  # not a projection of that time: left alone
            (checkpoint_key("imager.stored_images"), 5),
        ]
        cur = await conn.execute("SELECT projection, position FROM dpm_quarantine")
        assert await cur.fetchall() == [("api.accounts", 4)]
