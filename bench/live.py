"""Live progress benchmark (issue 20): many operators' tabs watching one run, against per-tab polling.

    uv run python -m bench --only live [--quick] [--streams 500]

The api runs as its own process (as `dpm up` starts it), so its CPU time (user + sys from
/proc/<pid>/stat) is its own. ``streams`` clients hold the console's page stream
``GET /console/executions/stream?run_id=...`` open (with a user's session cookie, as a browser's
EventSource does) while the bench appends one ExecutionQueued of that run every ``GAP`` seconds;
each stream notes when each new execution arrives. Figures: the api's CPU over the window (goal:
under 20 % of a core), and the delay from an append to its arrival on every page (per event the
slowest stream; p50 and p99 over the events). The api's CPU with the same appends and no client is
printed too: the projections' own share.

Baseline, in the same run against the same api process: the stream as it was before the live feed
(each connection re-ran its query of the run's executions every 0.5 s and held its own NATS
subscription), kept here only: ``python -m bench.live`` serves the api with that old path added at
``OLD_ROUTE``, and the same stream clients watch through it. Its ChunkSent forwarding is left out
(the bench sends no signals), so the baseline is, if anything, a little cheaper than the old code.
The baseline runs at most ``BASELINE_MAX`` streams (500 polling streams would be 1,000 queries a
second, more than the machine has); the fan-out is measured at that count too, for the like-for-like
ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from psycopg_pool import AsyncConnectionPool

from bench.imaging import _ready as ready
from bench.packages import cpu_seconds, stop
from dpm_api.adapters import executions
from dpm_api.adapters.executions import ExecutionFilter
from dpm_api.bootstrap import bootstrap
from dpm_api.settings import ApiSettings
from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.service import run
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import ChunkSent, ExecutionQueued
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.ids import stream_id

Row = Callable[..., dict[str, Any]]
GAP = 0.25  # seconds between appends
POLL = 0.5  # the old stream's default interval
OLD_ROUTE = "/bench/executions/poll-stream"
REPO = Path(__file__).resolve().parent.parent
WINDOW = 10.0  # seconds of appends per case
ARRIVAL_TIMEOUT = 30.0  # seconds the last event may take to reach every client
BASELINE_MAX = 100  # polling streams at most
PAGES = "/console/executions/stream"  # what the console's pages open
# streams opened at once, then a pause: 500 at the same instant wait for the api's database pool
# (each checks its session and reads a snapshot) past its 3 s limit, and some get 503
RAMP, RAMP_PAUSE = 50, 0.5
ENDED: Counter[str] = Counter()  # why client streams ended early (status or error), for the failure message
Arrivals = list[dict[str, float]]  # per client: execution id -> monotonic arrival time


def api(work: Path, port: int, token: str, *, admin_url: str, service_url: str, nats_url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPM_")}  # BENCH_PROFILE passes
    env.update(
        DPM_DATABASE_URL=service_url, DPM_DATABASE_ADMIN_URL=admin_url, DPM_NATS_URL=nats_url,
        DPM_API_PORT=str(port), DPM_API_TOKEN=token, DPM_RELAY_ENABLED="false", DPM_LOG_LEVEL="WARNING",
    )  # fmt: skip
    with open(work / "api.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.live"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )


def stream_client(path: str) -> Callable:
    async def client(http: httpx.AsyncClient, run_id: uuid.UUID, seen: dict[str, float]) -> None:
        await watch(http, path, run_id, seen)

    return client


async def watch(http: httpx.AsyncClient, path: str, run_id: uuid.UUID, seen: dict[str, float]) -> None:
    try:
        async with http.stream("GET", path, params={"run_id": str(run_id)}, timeout=None) as sse:
            if sse.status_code != 200:
                ENDED[f"HTTP {sse.status_code}"] += 1
            async for line in sse.aiter_lines():
                if line.startswith("data: {") and (eid := json.loads(line[6:]).get("execution_id")):
                    seen.setdefault(eid, time.monotonic())
    except httpx.HTTPError as exc:
        ENDED[type(exc).__name__] += 1


async def queue(log: EventLog, run_id: uuid.UUID) -> tuple[str, float]:
    """One new execution of the run; its id and when its append returned."""
    eid = uuid.uuid4()
    queued = ExecutionQueued(execution_id=eid, run_id=run_id, machine_id=uuid.uuid4(), scenario_id=uuid.uuid4(),
                             revision=1, name="bench", spec=ScenarioSpec(kind="simulated"))  # fmt: skip
    await log.append(stream_id(subjects.EXECUTION, eid), ANY_VERSION, [NewEvent(queued, Metadata.new(actor="bench"))])
    return str(eid), time.monotonic()


async def arrived(clients: Arrivals, eid: str, timeout: float = ARRIVAL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not all(eid in seen for seen in clients):
        if time.monotonic() > deadline:
            reached = sum(eid in s for s in clients)
            raise RuntimeError(f"execution {eid} reached {reached} of {len(clients)} clients; ended: {dict(ENDED)}")
        await asyncio.sleep(0.01)


async def session(http: httpx.AsyncClient) -> str:
    """An admin user made with the bootstrap token (``http``'s), and a session of it: the console's cookie."""
    name, password = f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    made = await http.post("/users", json={"username": name, "password": password, "role": "admin"})
    made.raise_for_status()
    login = await http.post("/auth/login", json={"username": name, "password": password})
    login.raise_for_status()
    return str(login.json()["token"])


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


async def measure(client: Callable, pid: int, url: str, token: str, log: EventLog, n: int, events: int) -> tuple:
    """(api CPU seconds, wall seconds, delays to every client) for one kind of client watching a fresh run;
    ``token`` is a session: the bearer header for the REST paths, the cookie for the console's."""
    run_id, clients = uuid.uuid4(), [{} for _ in range(n)]
    limits = httpx.Limits(max_connections=n + 10)
    headers, cookies = {"Authorization": f"Bearer {token}"}, {"dpm_session": token}
    async with httpx.AsyncClient(base_url=url, headers=headers, cookies=cookies, limits=limits) as http:
        tasks = []
        try:
            for i in range(0, n, RAMP):  # tabs open over a few seconds, not in one millisecond (see RAMP)
                tasks += [asyncio.create_task(client(http, run_id, seen)) for seen in clients[i : i + RAMP]]
                await asyncio.sleep(RAMP_PAUSE)
            first, _ = await queue(log, run_id)
            await arrived(clients, first, 120)  # every client connected and caught up: the clock starts
            cpu, started, appended = cpu_seconds([pid]), time.monotonic(), []
            for _ in range(events):
                appended.append(await queue(log, run_id))
                await asyncio.sleep(GAP)
            for eid, _ in appended:
                await arrived(clients, eid)
            cpu, wall = cpu_seconds([pid]) - cpu, time.monotonic() - started
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return cpu, wall, [max((seen[eid] for seen in clients), default=0.0) - at for eid, at in appended]


async def stream_cases(row: Row, *, admin_url: str, service_url: str, nats_url: str, streams: int) -> list[dict]:
    events, few = int(WINDOW / GAP), min(streams, BASELINE_MAX)
    work, port, token = Path(tempfile.mkdtemp(prefix="dpm-bench-live-")), free_port(), secrets.token_urlsafe(24)
    print(f"\nlive: {streams} console pages watching one run, {events} appends {GAP} s apart, loopback; the"
          f" per-stream polling baseline at {few} streams", flush=True)  # fmt: skip
    server = api(work, port, token, admin_url=admin_url, service_url=service_url, nats_url=nats_url)
    url = f"http://127.0.0.1:{port}"
    try:
        await ready(f"{url}/readyz")
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            user = await session(http)
        async with AsyncConnectionPool(service_url, min_size=1, max_size=2, open=False) as pool:
            log = EventLog(pool)
            ours = await measure(stream_client(PAGES), server.pid, url, user, log, streams, events)
            same = (
                ours if few == streams else await measure(stream_client(PAGES), server.pid, url, user, log, few, events)
            )
            base = await measure(stream_client(OLD_ROUTE), server.pid, url, user, log, few, events)
            alone = await measure(stream_client(PAGES), server.pid, url, user, log, 0, events)  # appends' own cost
    finally:
        stop(server)
    return figures(row, streams, few, ours, same, base, alone)


Measured = tuple[float, float, list[float]]  # (api CPU seconds, wall seconds, delays to every client)


def figures(
    row: Row, streams: int, few: int, ours: Measured, same: Measured, base: Measured, alone: Measured
) -> list[dict[str, Any]]:
    """The rows: each of (api CPU seconds, wall seconds, delays) as % of a core and p50/p99 delays."""
    old, base_cpu = f"per-stream polling (old), {few} streams", 100 * base[0] / base[1]
    counts = ((streams, ours), (few, same)) if few < streams else ((streams, ours),)
    out = [row(f"live: api CPU % of a core, {n} pages ({m[1]:.0f} s)", 100 * m[0] / m[1], old, base_cpu, unit="%")
           for n, m in counts]  # fmt: skip
    out.append(row("live: api CPU, no client (appends only)", 100 * alone[0] / alone[1], unit="%"))
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        for n, m in counts:
            value, baseline = 1000 * pct(m[2], q), 1000 * pct(base[2], q)
            out.append(row(f"live: delay to every page, {name}, {n} pages", value, old, baseline, unit="ms"))
    return out


def old_path() -> APIRouter:
    """The baseline's route: ``GET /executions/stream`` as it was, one query per connection per poll."""
    router = APIRouter()

    @router.get(OLD_ROUTE)
    async def poll_stream(request: Request, run_id: uuid.UUID, poll: float = POLL) -> StreamingResponse:
        shown = ExecutionFilter(run_id=run_id, limit=10_000)
        return StreamingResponse(polled(request, shown, poll), media_type="text/event-stream")

    return router


async def polled(request: Request, shown: ExecutionFilter, poll: float) -> AsyncIterator[str]:
    rt = request.app.state.runtime
    seen: dict[str, tuple[object, ...]] = {}

    async def ignore(_msg: Any) -> None:
        return None

    sub = await rt.nc.subscribe(subjects.signal_subject(ChunkSent.wire_name, "*"), cb=ignore)
    try:
        while not rt.closing.is_set() and not await request.is_disconnected():
            async with rt.pool.connection() as conn:
                rows = await executions.list_executions(conn, shown)
            for row in reversed(rows):
                if seen.get(row["execution_id"]) != (key := (row["state"], row["percent"], row["code"])):
                    seen[row["execution_id"]] = key
                    yield f"event: execution\ndata: {json.dumps(row)}\n\n"
            await asyncio.sleep(poll)
    finally:
        await sub.unsubscribe()


if __name__ == "__main__":  # the api with the baseline's old path beside the live one
    service = bootstrap(ApiSettings())
    service.app.include_router(old_path())
    if profile := os.environ.get("BENCH_PROFILE"):  # where the api's cProfile stats go, for finding hot spots
        import cProfile

        cProfile.run("run(service)", profile)
    else:
        run(service)
