"""Durable JetStream pull consumers with exactly-once effect.

A handler runs inside a PostgreSQL transaction that also inserts the tracking row
``(consumer, position)``; a redelivered event finds the row and is skipped. The message is acked
only after that transaction commits, so a crash between commit and ack costs a redelivery, not a
double effect. What to do with a message is the pure ``outcome.outcome`` (ack; nak with backoff;
term, logged, counted and kept in ``dpm_dead_letters`` -- also for a ``Retry`` past ``max_deliver``).

Handlers are the kernel's (``Bound``, from ``Router.bind``): ``h(e, ctx, **deps)`` with a ``Ctx``
whose queued effects run after the commit and before the ack (``context.py``). The old form
``h(rec, conn)`` still runs (``LegacyHandler``, deprecated) until the last consumer moves.

The bus is a pipe, not a source of truth: a handler never sees the message's body but the event
the log holds at the message's position (one lookup by the unique position, in the handler's
transaction). A message whose event id is not there was never relayed -- somebody published it
on the events stream directly -- and is terminated as forged (DPM-E023), never handled; so is one
that names a logged event id but another type or stream than the log's (DPM-E026), since the
handler is chosen by the message's type.
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

from dpm_runtime.context import Bound, Effect, UnitOfWork, run_effects
from dpm_runtime.eventlog import Conn, EventLog, decode_row, select_rows
from dpm_runtime.outcome import Ack, Forged, Nak, Outcome, Poison, Retry, outcome
from dpm_runtime.telemetry import context_from_headers, current_traceparent
from dpm_schemas import E, subjects
from dpm_schemas.base import Event
from dpm_schemas.codec import DecodeError, decode_envelope
from dpm_schemas.envelope import RecordedEvent

log = logging.getLogger(__name__)

LegacyHandler = Callable[[RecordedEvent, Conn], Awaitable[None]]
"""The old handler form, ``(rec, conn)``: deprecated, kept only until the scheduler's consumers move to
the kernel (issue 13); new code registers ``async def h(e, ctx, *, deps)`` on a ``Router``. Remove this
alias, its branch in ``ConsumerRunner._handle`` and ``Handler`` once nothing passes one."""
Handler = LegacyHandler  # deprecated name, same removal
__all__ = ["ConsumerRunner", "ConsumerSpec", "Forged", "Handler", "LegacyHandler", "Poison", "Retry"]


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable consumer: its name, the event types it handles and how hard it retries."""

    durable: str
    handlers: Mapping[type[Event], Bound | LegacyHandler]  # Bound: built by Router.bind
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
    effects_failed: int = 0
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
        self._eventlog = EventLog(pool)
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
        """Decode, handle in a span, run the committed effects, then ack / nak / term as ``outcome`` says."""
        deliveries = msg.metadata.num_delivered
        try:
            rec = decode_envelope(msg.data)
        except DecodeError as exc:
            await self._settle(msg, None, outcome(exc, deliveries, self.spec), deliveries)
            return
        with self._tracer.start_as_current_span(
            f"handle {rec.type}",
            context=context_from_headers(msg.headers),
            kind=SpanKind.CONSUMER,
            attributes={"dpm.consumer": self.spec.durable, "dpm.position": rec.position, "dpm.deliveries": deliveries},
        ) as span:
            error: Exception | None = None
            try:
                fresh, effects = await self._handle(rec, self._by_type.get(rec.type), msg.subject)
            except Exception as exc:
                error = exc
                self._mark(span, exc)
            else:  # committed: its effects run now, before the ack, inside the handler's span
                where = f"consumer {self.spec.durable} at {rec.position}"
                self.stats.effects_failed += await run_effects(effects, where=where)
                self.stats.handled += fresh
                self.stats.duplicates += not fresh
            await self._settle(msg, rec, outcome(error, deliveries, self.spec), deliveries)

    def _mark(self, span: trace.Span, exc: Exception) -> None:
        if isinstance(exc, Forged):
            span.set_status(Status(StatusCode.ERROR, exc.error.code))
        elif isinstance(exc, Poison):
            span.set_status(Status(StatusCode.ERROR, str(exc)))
        elif not isinstance(exc, Retry):
            self.stats.last_error = repr(exc)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, repr(exc)))

    async def _settle(self, msg: Msg, rec: RecordedEvent | None, verdict: Outcome, deliveries: int) -> None:
        """Carry out the verdict: ack, nak with its delay, or terminate and keep a dead letter."""
        if isinstance(verdict, Ack):
            await msg.ack()
        elif isinstance(verdict, Nak):
            if verdict.why and rec is not None:
                log.warning(
                    "consumer %s: %s at %d failed (delivery %d), retry in %.1f s: %s",
                    *(self.spec.durable, rec.type, rec.position, deliveries, verdict.delay, verdict.why),
                )
            self.stats.retried += 1
            await msg.nak(delay=verdict.delay)
        else:
            self.stats.forged += verdict.forged
            await self._poison(msg, None if verdict.forged else rec, verdict.reason, deliveries)

    async def _handle(
        self, rec: RecordedEvent, handler: Bound | LegacyHandler | None, subject: str
    ) -> tuple[bool, list[Effect]]:
        """Run the handler with its tracking row in one transaction; False when already handled.
        Returns the effects the handler queued, to run once this has committed."""
        effects: list[Effect] = []
        async with self._pool.connection() as conn, conn.transaction():
            rec = await _as_logged(conn, rec, subject)
            cur = await conn.execute(
                "INSERT INTO dpm_tracking (consumer, position) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (self.spec.durable, rec.position),
            )
            if await cur.fetchone() is None:
                return False, effects
            if isinstance(handler, Bound):
                ctx = UnitOfWork(conn, self._eventlog, rec, actor=handler.actor, traceparent=current_traceparent())
                await handler(rec.event, ctx)
                effects = ctx.effects
            elif handler is not None:
                await handler(rec, conn)  # LegacyHandler (deprecated)
        return True, effects

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


def _forged_error(subject: str, claimed: RecordedEvent, logged: str | None) -> Forged:
    if logged is None:
        return Forged(E.FORGED_EVENT(subject=subject, event_id=claimed.event_id, position=claimed.position))
    what = f"{claimed.type} on {claimed.stream_id}@{claimed.stream_version}"
    error = E.EVENT_MISMATCH(
        subject=subject, event_id=claimed.event_id, position=claimed.position, claimed=what, logged=logged
    )
    return Forged(error)


async def _as_logged(conn: Conn, claimed: RecordedEvent, subject: str) -> RecordedEvent:
    """The event the log holds at the claimed position; ``Forged`` unless it is the claimed event.

    The message's type picked the handler, so a message that names a logged event id but claims
    another type (or stream) is as forged as one naming no logged event: it would run one handler
    on another kind of event."""
    rows = await select_rows(conn, after=claimed.position - 1, limit=1)
    if not rows or rows[0][0] != claimed.position or rows[0][3] != claimed.event_id:
        raise _forged_error(subject, claimed, None)
    _, stream_id, stream_version, _, type_ = rows[0][:5]
    if (type_, stream_id, stream_version) != (claimed.type, claimed.stream_id, claimed.stream_version):
        raise _forged_error(subject, claimed, f"{type_} on {stream_id}@{stream_version}")
    return decode_row(rows[0])
