"""The relay: tails the event log by position and publishes every event to JetStream.

Exactly one relay is active per deployment: it holds a session-level PostgreSQL advisory lock on
its own connection, and reads, publishes and checkpoints through that same connection, so a relay
that loses its connection loses the lock and can no longer advance the checkpoint. Others stand by.
Each event is published with ``Nats-Msg-Id = event_id`` and the checkpoint advances only after
JetStream acknowledged the whole batch: a crash anywhere re-publishes (deduplicated), never loses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from dpm_schemas import subjects
from dpm_schemas.codec import envelope_from_row
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from dpm_runtime.eventlog import RawEvent, read_raw
from dpm_runtime.telemetry import context_from, inject

log = logging.getLogger(__name__)

RELAY_LOCK = 7291002
CHECKPOINT = "relay"


@dataclass
class RelayStats:
    active: bool = False
    published: int = 0
    checkpoint: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


class Relay:
    def __init__(
        self,
        *,
        conninfo: str,
        js: JetStreamContext,
        tracer: trace.Tracer,
        batch_size: int = 500,
        idle_poll: float = 0.5,
        standby_poll: float = 2.0,
    ) -> None:
        self._conninfo = conninfo
        self._js = js
        self._tracer = tracer
        self._batch_size = batch_size
        self._idle_poll = idle_poll
        self._standby_poll = standby_poll
        self.stats = RelayStats()

    async def run(self) -> None:
        """Run until cancelled: stand by until the lock is free, then publish; start over on errors."""
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.active = False
                self.stats.errors = [*self.stats.errors[-9:], repr(exc)]
                log.warning("relay interrupted, restarting: %r", exc)
                await asyncio.sleep(1.0)

    async def _run_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
            while not await _try_lock(conn):
                if not self.stats.active:
                    log.debug("relay standing by: another relay holds the lock")
                await asyncio.sleep(self._standby_poll)
            self.stats.active = True
            log.info("relay active")
            try:
                await self._pump(conn)
            finally:
                self.stats.active = False

    async def _pump(self, conn: psycopg.AsyncConnection) -> None:  # type: ignore[type-arg]
        woken = asyncio.Event()
        conn.add_notify_handler(lambda _n: woken.set())
        await conn.execute("LISTEN dpm_events")
        checkpoint = await _load_checkpoint(conn)
        self.stats.checkpoint = checkpoint
        while True:
            woken.clear()
            rows = await read_raw(conn, after=checkpoint, limit=self._batch_size)
            if rows:
                await self._publish(rows)
                checkpoint = rows[-1].position
                await conn.execute(
                    "INSERT INTO dpm_checkpoints (name, position) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now()",
                    (CHECKPOINT, checkpoint),
                )
                self.stats.checkpoint = checkpoint
                self.stats.batches += 1
                continue
            if not woken.is_set():
                async for _ in conn.notifies(timeout=self._idle_poll, stop_after=1):
                    pass

    async def _publish(self, rows: Sequence[RawEvent]) -> None:
        acks = [asyncio.ensure_future(self._publish_one(row)) for row in rows]
        try:
            await asyncio.gather(*acks)
        except BaseException:
            for fut in acks:
                fut.cancel()
            raise
        self.stats.published += len(rows)

    async def _publish_one(self, row: RawEvent) -> None:
        category = row.stream_id.split("-", 1)[0]
        parent = context_from(row.metadata.get("traceparent"))
        with self._tracer.start_as_current_span(
            f"publish {row.type}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={"dpm.position": row.position, "dpm.stream_id": row.stream_id},
        ):
            headers = {
                subjects.HEADER_MSG_ID: str(row.event_id),
                subjects.HEADER_POSITION: str(row.position),
                subjects.HEADER_TYPE: row.type,
            }
            inject(headers)
            body = envelope_from_row(
                event_id=row.event_id,
                wire_type=row.type,
                version=row.schema_version,
                stream_id=row.stream_id,
                stream_version=row.stream_version,
                position=row.position,
                occurred_at=row.recorded_at,
                metadata=row.metadata,
                data=row.data,
            )
            await self._js.publish(subjects.event_subject(category, row.type), body, headers=headers, timeout=10)


async def _try_lock(conn: psycopg.AsyncConnection) -> bool:  # type: ignore[type-arg]
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))).fetchone()
    return bool(row and row[0])


async def _load_checkpoint(conn: psycopg.AsyncConnection) -> int:  # type: ignore[type-arg]
    cur = await conn.execute("SELECT position FROM dpm_checkpoints WHERE name = %s", (CHECKPOINT,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0
