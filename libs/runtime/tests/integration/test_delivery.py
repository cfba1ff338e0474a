"""Every event reaches a NATS consumer exactly once in effect -- with writers racing, the active relay
SIGKILLed (a standby takes over, then it is restarted) and a consumer replica SIGKILLed mid-batch."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.testing import eventually
from dpm_schemas import Metadata, NewEvent
from dpm_schemas.events import Probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).parent


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def relay(env, log):
    return spawn(["-m", "dpm_runtime.relay"], env, log)


def consumer(env, log):
    return spawn([str(HERE / "consumer_proc.py"), "probe-effects", "2"], env, log)


async def active_relay_pid(database) -> int | None:
    """The OS pid of the relay process holding the relay lock (from its application_name)."""
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        row = await (
            await conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.objid = 7291002 AND l.granted"
            )
        ).fetchone()
        return int(row[0].rsplit("-", 1)[1]) if row else None


async def effects(database) -> tuple[int, int, int]:
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        row = await (
            await conn.execute("SELECT count(*), count(DISTINCT position), coalesce(max(position), 0) FROM effects")
        ).fetchone()
        return row


async def test_exactly_once_in_effect_through_relay_and_consumer_crashes(
    database, nats_server, eventlog: EventLog, service_env, tmp_path
) -> None:
    async with await psycopg.AsyncConnection.connect(database.admin_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE effects (position bigint, event_id uuid, pid int)")
        await conn.execute("GRANT INSERT, SELECT ON effects TO dpm_service")

    procs: list[subprocess.Popen[bytes]] = []
    try:
        relays = [relay(service_env, tmp_path / f"relay{i}.log") for i in range(2)]
        consumers = [consumer(service_env, tmp_path / f"consumer{i}.log") for i in range(2)]
        procs += relays + consumers
        await eventually(lambda: active_relay_pid(database), what="an active relay", timeout=30)

        stop = asyncio.Event()

        async def writer(n: int) -> int:
            rng, count = random.Random(n), 0
            while not stop.is_set():
                size = rng.choice([1, 1, 2, 5])
                batch = [NewEvent(Probe(writer=n, seq=count + k), Metadata.new()) for k in range(size)]
                await eventlog.append(f"test-{n}-{rng.randrange(20)}", ANY_VERSION, batch)
                count += size
            return count

        writers = [asyncio.create_task(writer(n)) for n in range(8)]
        await asyncio.sleep(1.5)

        # SIGKILL whichever relay is active; the standby must take over; then restart the dead one.
        pid = await active_relay_pid(database)
        (active,) = [r for r in relays if r.pid == pid]
        (standby,) = [r for r in relays if r.pid != pid]
        before = (await effects(database))[0]
        active.send_signal(signal.SIGKILL)
        active.wait()
        procs.append(relay(service_env, tmp_path / "relay-restarted.log"))
        await eventually(
            lambda: active_relay_pid(database),
            until=lambda p: p == standby.pid,
            what="the standby relay taking over",
            timeout=20,
        )
        await asyncio.sleep(1.0)

        # SIGKILL a consumer replica while it has a batch in hand; restart it.
        consumers[0].send_signal(signal.SIGKILL)
        consumers[0].wait()
        procs.append(consumer(service_env, tmp_path / "consumer-restarted.log"))
        await asyncio.sleep(1.5)

        stop.set()
        written = sum(await asyncio.gather(*writers))
        head = await eventlog.head()
        assert written == head and written > 500, (written, head)

        total, distinct, top = await eventually(
            lambda: effects(database), until=lambda r: r[1] == head, timeout=90, what="all events handled"
        )
        assert (total, distinct, top) == (head, head, head), "an event was lost or handled twice"
        assert before < head
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    # the killed consumer's in-flight batch went to the other replica or the restarted one
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        pids = await (await conn.execute("SELECT count(DISTINCT pid) FROM effects")).fetchone()
    assert pids[0] >= 2, "replicas did not share the work"
    assert os.path.exists(tmp_path / "relay-restarted.log")
