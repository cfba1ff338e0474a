"""Live execution progress, fanned out: one feed per api process serves every open stream.

Each ``GET /executions/stream`` used to re-run its query every half second, so the api's cost grew
with the number of watching tabs. Now the executions read model (``runs.ExecutionList``) calls
``LiveFeed.applied`` from its ``apply``; once that batch is committed the feed reads only the rows
whose ``position`` moved past the last one it saw, in one query whatever the number of streams, and
offers each to every subscriber's bounded queue. It also holds the process's one NATS subscription
to ChunkSent signals. A slow subscriber never blocks the feed: an overflowing queue marks it for a
full resync of its filter (one snapshot query for that stream only). A fallback read every
``FALLBACK`` seconds covers rows another api replica applied, and a hook lost to an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg

from dpm_api.adapters import executions
from dpm_api.adapters.executions import ExecutionFilter
from dpm_api.runs import ExecutionList
from dpm_runtime.eventlog import Conn
from dpm_runtime.service import Runtime
from dpm_runtime.wake import idle
from dpm_schemas import codec, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.errors import CATALOGUE
from dpm_schemas.events import ChunkSent

log = logging.getLogger(__name__)

FINAL = ("completed", "failed", "suspended")
FALLBACK = 1.0  # seconds between reads when no local batch woke the feed (other replicas' batches)
COMMIT_WAIT = 2.0  # seconds the feed waits for a hooked batch to commit before it reads anyway
QUEUE = 1000  # items a subscriber may lag behind before it is resynced
BATCH = 5000  # rows per read of the changes; a bigger backlog takes several reads
COLUMNS = ("x.execution_id, x.run_id, x.machine_id, m.name, x.scenario, x.revision, x.kind, x.state, x.percent,"
           " x.code, x.reason, x.cleared, x.queued_at, x.started_at, x.ended_at, x.position")  # fmt: skip
FROM = "FROM api.executions x LEFT JOIN api.machines m ON m.machine_id = x.machine_id"


@dataclass(frozen=True)
class Change:
    """One execution row as the read model holds it after the event at ``position``."""

    position: int
    row: dict[str, Any]

    @functools.cached_property
    def event(self) -> str:
        """The server-sent event, encoded once however many streams send it."""
        return f"event: execution\ndata: {json.dumps(self.row)}\n\n"


@dataclass(frozen=True)
class Watch:
    """What one stream shows: every execution, or one run's, or one machine's (name or id)."""

    run_id: str | None = None
    machine: str | None = None

    def matches(self, row: dict[str, Any]) -> bool:
        if self.run_id is not None and row["run_id"] != self.run_id:
            return False
        return self.machine is None or self.machine in (row["machine"], row["machine_id"])


@dataclass(eq=False)
class Subscriber:
    """One stream's inbox: the feed offers every change and signal, it keeps what its watch shows."""

    watch: Watch
    queue: asyncio.Queue[Change | ChunkSent | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))
    shown: set[str] = field(default_factory=set)  # execution ids the watch matched: their transfers pass
    resync: bool = False  # the queue overflowed: the stream re-reads its snapshot
    closed: bool = False  # the api is closing: nothing more is offered

    def offer(self, item: Change | ChunkSent) -> None:
        if self.closed:
            return
        if isinstance(item, Change):
            if not self.watch.matches(item.row):
                return
            self.shown.add(item.row["execution_id"])
        elif str(item.execution_id) not in self.shown:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:  # a lost transfer is replaced by the next; a lost row is re-read
            self.resync = self.resync or isinstance(item, Change)

    async def next(self, timeout: float) -> Change | ChunkSent | None:
        """The next item, or None after ``timeout`` seconds or when the feed closed the inbox."""
        try:
            async with asyncio.timeout(timeout):  # a timer, not a task per wait as wait_for makes
                return await self.queue.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        """Wake the stream now (the api is closing): its next wait returns at once."""
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes it anyway
            self.queue.put_nowait(None)

    def take(self) -> list[Change | ChunkSent]:
        out: list[Change | ChunkSent] = []
        while not self.queue.empty():
            if (item := self.queue.get_nowait()) is not None:
                out.append(item)
        return out


@dataclass
class View:
    """What one stream has sent: an execution is sent again only when its state, percent or code
    changed, and never older than what was sent (a resync snapshot may overtake queued changes)."""

    watch: Watch
    sent: dict[str, tuple[int, tuple[object, ...]]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)

    def render(self, item: Change | ChunkSent) -> str | None:
        """The server-sent event for ``item``, or None when it shows nothing new."""
        if isinstance(item, ChunkSent):
            return f"event: transfer\ndata: {item.model_dump_json()}\n\n"
        row, eid = item.row, item.row["execution_id"]
        before = self.sent.get(eid)
        if before is not None and before[0] > item.position:
            return None
        key = (row["state"], row["percent"], row["code"])
        self.sent[eid] = (item.position, key)
        self.states[eid] = row["state"]
        if before is not None and before[1] == key:
            return None
        return item.event

    def ended(self) -> bool:
        """A run's stream ends once every execution of the run it has seen is final."""
        states = self.states.values()
        return self.watch.run_id is not None and bool(states) and all(s in FINAL for s in states)


def shape(rows: Sequence[tuple[Any, ...]]) -> list[Change]:
    """Rows as ``executions.list_executions`` shapes them (JSON-ready, remedy beside the code)."""
    out = []
    for r in rows:
        values = zip(executions.KEYS, r[:-1], strict=True)
        row = {k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in values}
        known = CATALOGUE.get(row["code"] or "")
        row["remedy"] = known.remedy if known else None
        out.append(Change(int(r[-1]), row))
    return out


async def snapshot(conn: Conn, f: ExecutionFilter) -> list[Change]:
    """A stream's starting point (and resync): its executions, oldest first, with their positions."""
    where, params = f.where()
    sql = f"SELECT {COLUMNS} {FROM} {where} ORDER BY x.queued_at DESC, x.execution_id LIMIT %s"
    rows = await (await conn.execute(sql, (*params, f.limit))).fetchall()
    return shape(rows)[::-1]


class LiveExecutionList(ExecutionList):
    """The executions read model, telling the feed how far each batch it applies reaches."""

    def __init__(self, feed: LiveFeed) -> None:
        self._feed = feed

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        await super().apply(conn, schema, events)
        if events:
            self._feed.applied(events[-1].position)


class LiveFeed:
    """The one reader of the executions read model and of ChunkSent signals, for every stream."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.position = 0  # the newest row position read
        self.queries = 0  # reads of the changes (one per wake-up, whatever the number of streams)
        self.wakeups = 0
        self._target = 0  # the newest position a local batch applied (committed soon after)
        self._woken = asyncio.Event()

    def subscribe(self, watch: Watch) -> Subscriber:
        sub = Subscriber(watch)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def applied(self, position: int) -> None:
        """Called inside the projection's transaction; the feed reads once it has committed."""
        self._target = max(self._target, position)
        self._woken.set()

    def publish(self, item: Change | ChunkSent) -> None:
        for sub in list(self.subscribers):
            sub.offer(item)

    async def on_signal(self, msg: Msg) -> None:
        """Decoded once with the schema version its publisher sent (a signal is never stored)."""
        version = (msg.headers or {}).get(subjects.HEADER_VERSION, "")
        with contextlib.suppress(Exception):  # one undecodable signal loses one progress line
            signal = codec.decode_payload(
                ChunkSent.wire_name, int(version) if version.isdigit() else ChunkSent.wire_version, msg.data
            )
            if isinstance(signal, ChunkSent):
                self.publish(signal)

    async def run(self, rt: Runtime) -> None:
        """A wiring task: follow the read model until cancelled."""
        runner = rt.projections[ExecutionList.name]
        sub = await rt.nc.subscribe(subjects.signal_subject(ChunkSent.wire_name, "*"), cb=self.on_signal)
        closer = asyncio.create_task(self._close_on(rt.closing))
        try:
            while True:
                await idle(FALLBACK, self._woken)
                self._woken.clear()
                self.wakeups += 1
                deadline = time.monotonic() + COMMIT_WAIT
                # the runner has no commit hook: its in-memory position moves once the batch committed
                # (milliseconds; ``wait_for`` would add a checkpoint query to every wake-up)
                while runner.position < self._target and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.002)
                if not self.subscribers:  # nobody watches: skip the read (a new stream starts from a snapshot)
                    self.position = max(self.position, runner.position)
                    continue
                try:
                    async with rt.pool.connection() as conn:
                        await self._read(conn)
                except Exception as exc:  # retried at the next wake-up (at most FALLBACK seconds away)
                    log.warning("live feed: reading the changed executions failed: %r", exc)
        finally:
            closer.cancel()
            await sub.unsubscribe()

    async def _close_on(self, closing: asyncio.Event) -> None:
        """Once the api starts closing, wake every stream: each ends instead of holding the drain."""
        await closing.wait()
        for sub in list(self.subscribers):
            sub.close()

    async def _read(self, conn: Conn) -> None:
        """The rows changed since the last read, in position order, offered to every subscriber."""
        self.queries += 1
        sql = f"SELECT {COLUMNS} {FROM} WHERE x.position > %s ORDER BY x.position LIMIT %s"
        changes = shape(await (await conn.execute(sql, (self.position, BATCH))).fetchall())
        for change in changes:
            self.publish(change)
        if changes:
            self.position = changes[-1].position
            if len(changes) == BATCH:
                self._woken.set()
