"""Live progress from one feed per api process (dpm_api.live): many streams, one read per wake-up."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Event, Metadata, NewEvent, subjects
from dpm_schemas.events import ExecutionCompleted, ExecutionQueued, ExecutionStarted
from dpm_schemas.events.executions import StartAction
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration

STREAMS = 20


async def watch(http: httpx.AsyncClient, params: dict, into: list[tuple[str, dict]]) -> None:
    """Collect one stream's events until it ends."""
    async with http.stream("GET", "/executions/stream", params=params, timeout=60) as sse:
        kind = ""
        async for line in sse.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                into.append((kind, json.loads(line[6:])))


async def append(api, execution_id: uuid.UUID, *events: Event) -> None:
    news = [NewEvent(e, Metadata.new(actor="scheduler")) for e in events]
    await api.runtime.eventlog.append(stream_id(subjects.EXECUTION, execution_id), ANY_VERSION, news)


async def test_twenty_streams_get_each_change_from_one_read_and_a_run_stream_ends(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        feed = api.service.app.state.live
        r = await api.http.post("/machines", json={"name": "pc1", "macs": ["52:54:00:aa:00:01"]})
        machine, run, execution = uuid.UUID(r.json()["machine_id"]), uuid.uuid4(), uuid.uuid4()
        got: list[list[tuple[str, dict]]] = [[] for _ in range(STREAMS)]
        elsewhere: list[tuple[str, dict]] = []
        tasks = [asyncio.create_task(watch(api.http, {"run_id": str(run)}, into)) for into in got]
        tasks.append(asyncio.create_task(watch(api.http, {"run_id": str(uuid.uuid4())}, elsewhere)))

        async def watching() -> int:
            return len(feed.subscribers)

        await eventually(watching, until=lambda n: n == STREAMS + 1, what="streams open")
        queries, wakeups = feed.queries, feed.wakeups

        spec = ScenarioSpec(kind="simulated", params=(("seconds", "1"),))
        queued = ExecutionQueued(execution_id=execution, run_id=run, machine_id=machine, scenario_id=uuid.uuid4(),
                                 revision=1, name="sim", spec=spec)  # fmt: skip
        await append(api, execution, queued)

        async def everyone_saw_it() -> bool:
            return all(any(k == "execution" and d["state"] == "queued" for k, d in g) for g in got)

        await eventually(everyone_saw_it, timeout=15, what="the queued execution on all 20 streams")
        # one read of the changes per wake-up of the feed, however many streams watch
        assert 1 <= feed.queries - queries <= feed.wakeups - wakeups

        await append(api, execution, ExecutionStarted(execution_id=execution, machine_id=machine,
                                                      action=StartAction.RUN))  # fmt: skip
        await append(api, execution, ExecutionCompleted(execution_id=execution, machine_id=machine))
        await asyncio.wait_for(asyncio.gather(*tasks[:STREAMS]), 20)  # every run stream ended by itself
        for g in got:
            assert g[-1] == ("end", {})
            states = [d["state"] for k, d in g if k == "execution"]
            assert states[0] == "queued" and states[-1] == "completed" and len(states) == len(set(states))
            assert all(d["execution_id"] == str(execution) and d["machine"] == "pc1" for k, d in g[:-1])
        assert elsewhere == []  # another run's stream shows none of it
        tasks[-1].cancel()
        await eventually(watching, until=lambda n: n == 0, what="streams closed")
