"""Durable JetStream pull consumers with exactly-once effect.

A handler runs inside a PostgreSQL transaction that also inserts the tracking row
``(consumer, position)``; a redelivered event finds the row and is skipped. The message is acked
only after that transaction commits, so a crash between commit and ack costs a redelivery, not a
double effect. Outcomes: success -> ack; ``Retry`` or an unexpected error -> nak with backoff;
``Poison``, an undecodable body, or too many deliveries -> term, logged, counted and kept in
``dpm_dead_letters``.

The bus is a pipe, not a source of truth: a handler never sees the message's body but the event
the log holds at the message's position (one lookup by the unique position, in the handler's
transaction). A message whose event id is not there was never relayed -- somebody published it
on the events stream directly -- and is terminated as forged (DPM-E023), never handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.eventlog import Conn, decode_row, select_rows
from dpm_runtime.telemetry import context_from_headers
from dpm_schemas import E, subjects
from dpm_schemas.base import Event
from dpm_schemas.codec import DecodeError, decode_envelope
from dpm_schemas.envelope import RecordedEvent

log = logging.getLogger(__name__)

Handler = Callable[[RecordedEvent, Conn], Awaitable[None]]


class Retry(Exception):
    """Raise from a handler to have the event redelivered after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Poison(Exception):
    """Raise from a handler when the event can never be handled: it is terminated, not retried."""


class Forged(Exception):
    """The message names an event the log does not hold (DPM-E023)."""


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable consumer: its name, the event types it handles and how hard it retries."""

    durable: str
    handlers: Mapping[type[Event], Handler]
    max_deliver: int = 8
    ack_wait: float = 30.0
    batch_size: int = 50
    backoff: float = 0.5  # first nak delay; doubles per delivery, capped at 30 s

    @property
    def filter_subjects(self) -> list[str]:
        return sorted(subjects.event_subject("*", cls.wire_name) for cls in self.handlers)

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subjects=self.filter_subjects,
            max_deliver=self.max_deliver + 1,  # the last delivery is the one we terminate
            ack_wait=self.ack_wait,
            max_ack_pending=max(1000, self.batch_size * 4),
        )


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    retried: int = 0
    poisoned: int = 0
    forged: int = 0
    last_error: str | None = field(default=None)


class ConsumerRunner:
    def __init__(
        self,
        spec: ConsumerSpec,
        *,
        js: JetStreamContext,
        pool: AsyncConnectionPool[Conn],
        tracer: trace.Tracer,
        fetch_timeout: float = 1.0,
    ) -> None:
        self.spec = spec
        self._js = js
        self._pool = pool
        self._tracer = tracer
        self._fetch_timeout = fetch_timeout
        self._by_type = {cls.wire_name: handler for cls, handler in spec.handlers.items()}
        self.stats = ConsumerStats()

    async def declare(self) -> None:
        """Create the durable consumer, or bring its configuration up to date (idempotent)."""
        # CONSUMER.CREATE with a durable name creates, or updates an existing consumer in place.
        config = self.spec.config()
        await self._js.add_consumer(subjects.EVENTS_STREAM, config=config)
        log.info("declared consumer %s on %s", self.spec.durable, config.filter_subjects)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle until ``stop`` is set; the message in hand is finished first (drain)."""
        sub = await self._js.pull_subscribe_bind(self.spec.durable, stream=subjects.EVENTS_STREAM)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(self.spec.batch_size, timeout=self._fetch_timeout)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue  # nothing to do within the fetch window
                except Exception as exc:  # connection loss and the like: never take the service down
                    log.warning("consumer %s: fetch failed: %s", self.spec.durable, exc)
                    await asyncio.sleep(1.0)
                    continue
                for i, msg in enumerate(msgs):
                    if stop.is_set():
                        for rest in msgs[i:]:  # hand back what we will not handle, for another replica
                            await rest.nak()
                        break
                    await self.process(msg)
        finally:
            await sub.unsubscribe()

    async def process(self, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered
        try:
            rec = decode_envelope(msg.data)
        except DecodeError as exc:
            await self._poison(msg, None, f"undecodable: {exc}", deliveries)
            return
        handler = self._by_type.get(rec.type)
        parent = context_from_headers(msg.headers)
        with self._tracer.start_as_current_span(
            f"handle {rec.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"dpm.consumer": self.spec.durable, "dpm.position": rec.position, "dpm.deliveries": deliveries},
        ) as span:
            try:
                fresh = await self._handle(rec, handler)
            except Retry as exc:
                self.stats.retried += 1
                await msg.nak(delay=exc.delay)
                return
            except Poison as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self._poison(msg, rec, f"poison: {exc}", deliveries)
                return
            except Forged:
                forged = E.FORGED_EVENT(subject=msg.subject, event_id=rec.event_id, position=rec.position)
                span.set_status(Status(StatusCode.ERROR, forged.code))
                self.stats.forged += 1
                await self._poison(msg, None, f"forged: {forged.code} {forged.message}", deliveries)
                return
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, repr(exc)))
                await self._failed(msg, rec, exc, deliveries)
                return
        await msg.ack()
        if fresh:
            self.stats.handled += 1
        else:
            self.stats.duplicates += 1

    async def _failed(self, msg: Msg, rec: RecordedEvent, exc: Exception, deliveries: int) -> None:
        """An unexpected error: redeliver with backoff, or terminate after ``max_deliver``."""
        self.stats.last_error = repr(exc)
        if deliveries >= self.spec.max_deliver:
            await self._poison(msg, rec, f"failed {deliveries} times: {exc!r}", deliveries)
            return
        delay = min(30.0, self.spec.backoff * 2 ** (deliveries - 1))
        log.warning(
            "consumer %s: %s at %d failed (delivery %d), retry in %.1f s: %r",
            self.spec.durable,
            rec.type,
            rec.position,
            deliveries,
            delay,
            exc,
        )
        self.stats.retried += 1
        await msg.nak(delay=delay)

    async def _handle(self, rec: RecordedEvent, handler: Handler | None) -> bool:
        """Run the handler with its tracking row in one transaction; False when already handled."""
        async with self._pool.connection() as conn, conn.transaction():
            rec = await _as_logged(conn, rec)
            cur = await conn.execute(
                "INSERT INTO dpm_tracking (consumer, position) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (self.spec.durable, rec.position),
            )
            if await cur.fetchone() is None:
                return False
            if handler is not None:
                await handler(rec, conn)
            return True

    async def _poison(self, msg: Msg, rec: RecordedEvent | None, reason: str, deliveries: int) -> None:
        self.stats.poisoned += 1
        log.error(
            "consumer %s: terminating message on %s: %s",
            self.spec.durable,
            msg.subject,
            reason,
            extra={"consumer": self.spec.durable, "subject": msg.subject, "deliveries": deliveries},
        )
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO dpm_dead_letters (consumer, event_id, position, subject, deliveries, reason)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        self.spec.durable,
                        rec.event_id if rec else None,
                        rec.position if rec else None,
                        msg.subject,
                        deliveries,
                        reason[:2000],
                    ),
                )
        finally:
            await msg.term()


async def _as_logged(conn: Conn, claimed: RecordedEvent) -> RecordedEvent:
    """The event the log holds at the claimed position; ``Forged`` unless it is the claimed event."""
    rows = await select_rows(conn, after=claimed.position - 1, limit=1)
    if not rows or rows[0][0] != claimed.position or rows[0][3] != claimed.event_id:
        raise Forged(claimed.event_id)
    return decode_row(rows[0])
