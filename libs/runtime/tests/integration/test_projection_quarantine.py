"""A projection that meets an event it cannot decode or apply quarantines it and keeps advancing:
the later events still apply, the entry is recorded and counted, and an admin retries or skips it.
Before, the runner retried the batch forever and a rebuild failed (HTTP 500)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from dpm_runtime import quarantine
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_runtime.projection import ProjectionRunner, rebuild, retry_quarantined, skip_quarantined
from dpm_runtime.testing import eventually
from dpm_schemas import Metadata, NewEvent
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.errors import DpmError
from dpm_schemas.events import Probe

pytestmark = pytest.mark.integration


class Notes:
    """A read model of Probe notes; ``boom`` notes raise while ``broken`` (a bug, fixed later), and
    ``offline`` notes fail like a lost connection."""

    name = "notes"
    schema = "qtest"
    tables = ("notes",)
    event_types = ("Probe",)

    def __init__(self) -> None:
        self.broken = True

    def ddl(self, schema: str) -> str:
        return f'CREATE TABLE IF NOT EXISTS "{schema}".notes (seq int PRIMARY KEY, note text NOT NULL);'

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            assert isinstance(rec.event, Probe)
            if rec.event.note == "boom" and self.broken:
                raise ValueError("the projection has a bug")
            if rec.event.note == "offline":
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            await conn.execute(
                f'INSERT INTO "{schema}".notes (seq, note) VALUES (%s, %s) ON CONFLICT (seq) DO UPDATE'
                " SET note = excluded.note",
                (rec.event.seq, rec.event.note),
            )


async def append(eventlog: EventLog, *probes: Probe) -> None:
    await eventlog.append("probe-q", ANY_VERSION, [NewEvent(p, Metadata.new(actor="test")) for p in probes])


def nul_probe(seq: int) -> Probe:
    """An event as an older, laxer version of the contract let into the log: it no longer decodes."""
    return Probe.model_construct(writer=0, seq=seq, note="x\x00y")


async def notes(pool: AsyncConnectionPool[Conn]) -> dict[int, str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT seq, note FROM qtest.notes ORDER BY seq")
        return dict(await cur.fetchall())


async def test_poison_is_quarantined_and_later_events_still_apply(pool, eventlog: EventLog) -> None:
    projection = Notes()
    runner = ProjectionRunner(projection, pool=pool, eventlog=eventlog)
    await runner.setup()
    await append(eventlog, Probe(writer=0, seq=1), Probe(writer=0, seq=2, note="boom"), Probe(writer=0, seq=3))
    await append(eventlog, nul_probe(4), Probe(writer=0, seq=5, note="after"))

    assert await runner.step() is False  # one pass: nothing retried forever
    assert await notes(pool) == {1: "", 3: "", 5: "after"}
    assert runner.position == 5 and runner.quarantined == 2
    async with pool.connection() as conn:
        entries = await quarantine.entries(conn, "notes")
    assert [(e.position, e.type, e.status) for e in entries] == [
        (2, "Probe", "quarantined"),
        (4, "Probe", "quarantined"),
    ]
    assert "the projection has a bug" in entries[0].error
    assert "ValidationError" in entries[1].error and "\x00" not in entries[1].error

    await append(eventlog, Probe(writer=0, seq=6, note="later"))
    await runner.step()
    assert (await notes(pool))[6] == "later"

    projection.broken = False  # the bug is fixed: a retry applies the event and clears the entry
    await retry_quarantined(projection, pool=pool, position=2)
    assert (await notes(pool))[2] == "boom"
    with pytest.raises(DpmError) as failed:  # the NUL never decodes: it stays, with the new attempt
        await retry_quarantined(projection, pool=pool, position=4)
    assert failed.value.code == "DPM-E171"
    await skip_quarantined(projection.name, pool=pool, position=4)
    await runner.refresh_quarantined()
    assert runner.quarantined == 0
    async with pool.connection() as conn:
        [entry] = await quarantine.entries(conn, "notes")
    assert (entry.position, entry.status, entry.attempts) == (4, "skipped", 2)
    with pytest.raises(DpmError) as missing:
        await skip_quarantined(projection.name, pool=pool, position=3)
    assert missing.value.code == "DPM-E170"


async def test_a_rebuild_quarantines_instead_of_failing(pool, eventlog: EventLog) -> None:
    projection = Notes()
    runner = ProjectionRunner(projection, pool=pool, eventlog=eventlog)
    await runner.setup()
    await append(eventlog, Probe(writer=0, seq=1), Probe(writer=0, seq=2, note="boom"), nul_probe(3))
    await append(eventlog, Probe(writer=0, seq=4))

    result = await rebuild(projection, pool=pool, eventlog=eventlog, batch_size=2)
    assert (result.events, result.position, result.quarantined) == (4, 4, 2)
    assert await notes(pool) == {1: "", 4: ""}

    projection.broken = False  # a rebuild with the fix applies it again and clears its entry
    result = await rebuild(projection, pool=pool, eventlog=eventlog)
    assert result.quarantined == 1 and (await notes(pool))[2] == "boom"
    async with pool.connection() as conn:
        assert [e.position for e in await quarantine.entries(conn, "notes")] == [3]


async def test_a_lost_connection_is_retried_not_quarantined(pool, eventlog: EventLog) -> None:
    runner = ProjectionRunner(Notes(), pool=pool, eventlog=eventlog)
    await runner.setup()
    await append(eventlog, Probe(writer=0, seq=1), Probe(writer=0, seq=2, note="offline"))
    with pytest.raises(psycopg.OperationalError):
        await runner.step()
    assert runner.position == 0 and runner.quarantined == 0
    async with pool.connection() as conn:
        assert await quarantine.entries(conn) == []


async def test_a_retry_requested_from_elsewhere_is_carried_out_by_the_owning_runner(pool, eventlog: EventLog) -> None:
    """The api lists and marks entries of every service; only the owner has the projection's code."""
    projection = Notes()
    runner = ProjectionRunner(projection, pool=pool, eventlog=eventlog, quarantine_poll=0.05)
    await runner.setup()
    await append(eventlog, Probe(writer=0, seq=1, note="boom"), nul_probe(2), Probe(writer=0, seq=3))
    await runner.step()
    projection.broken = False
    async with pool.connection() as conn, conn.transaction():
        assert (await quarantine.request_retry(conn, "notes", 1)).status == "retry"
        assert (await quarantine.request_retry(conn, "notes", 2)).status == "retry"
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:

        async def served() -> bool:
            async with pool.connection() as conn:
                left = await quarantine.entries(conn, "notes")
            return [(e.position, e.status) for e in left] == [(2, "quarantined")]

        await eventually(served, timeout=10)
        assert (await notes(pool))[1] == "boom"  # applied by the owner; the NUL stays, with a new attempt
        assert runner.quarantined == 1
    finally:
        stop.set()
        await task
