"""The handler's context (``Ctx``): its transaction, appends that carry causality, effects after commit.

A handler never builds ``Metadata`` by hand: ``ctx.append`` derives it from the cause -- the same
correlation id, the cause's event id as causation, the cause's actor (unless the handler's route
names another) and the current span's ``traceparent`` (else the cause's), so one trace and one
conversation span a run from the api request to its last step.

``ctx.after_commit(effect)`` queues an effect (Wake-on-LAN, an agent command, an HTTP call) that runs
only once the transaction committed -- in a consumer before the message is acked -- and never when
it rolled back. The policy, the same for consumers and for timer rounds (``unit_of_work``):

- Effects run in the order queued; one that fails is logged (DPM-E035) and the others still run.
  The state change is committed, so the message is acked and the effect is not retried from here.
- A crash between the commit and an effect loses that effect for this message: the tracking row
  says the event was handled. So a process manager whose effect must happen keeps the need in its
  committed state ("powering on since T") and re-drives it from a timer round; an effect can
  therefore run more than once (at-least-once overall), and every effect must be idempotent or
  guarded (a wake is harmless twice; a shutdown checks the machine is still the run's).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.eventlog import ANY_VERSION, AppendResult, Conn, EventLog
from dpm_runtime.telemetry import context_from, current_traceparent
from dpm_schemas import E
from dpm_schemas.base import Event
from dpm_schemas.envelope import Metadata, NewEvent, RecordedEvent

log = logging.getLogger(__name__)

ANY = ANY_VERSION  # ``expected=ANY``: append whatever version the stream is at
Effect = Callable[[], Awaitable[None]]
Cause = RecordedEvent | Metadata  # the event handled, or the metadata stored with a process (timer rounds)


class Ctx(Protocol):
    """What a handler gets besides its message: see the module docstring."""

    conn: Conn  # the handler's transaction; adapters take it

    @property
    def position(self) -> int: ...  # pragma: no cover - the log position of the event handled (0 in a round)

    @property
    def metadata(self) -> Metadata: ...  # pragma: no cover - what an append gets (a process stores it for its rounds)

    async def append(
        self, stream: str, events: Sequence[Event], *, expected: int | None = ANY
    ) -> AppendResult: ...  # pragma: no cover - protocol

    def after_commit(self, effect: Effect) -> None: ...  # pragma: no cover - protocol


def derive_metadata(cause: Cause, *, actor: str | None = None, traceparent: str | None = None) -> Metadata:
    """The metadata of what is appended in reaction to ``cause`` (pure).

    From an event: its correlation, the event as causation. From stored metadata (a timer round of
    a run): that correlation and causation unchanged. The actor is the cause's unless given; the
    ``traceparent`` is the given one (the handler's span), else the cause's."""
    causation: uuid.UUID | None
    if isinstance(cause, RecordedEvent):
        meta, causation = cause.metadata, cause.event_id
    else:
        meta, causation = cause, cause.causation_id
    return Metadata(
        correlation_id=meta.correlation_id,
        causation_id=causation,
        actor=actor or meta.actor,
        traceparent=traceparent or meta.traceparent,
    )


@dataclass
class UnitOfWork:
    """The ``Ctx`` implementation: one open transaction, the cause, and the effects queued so far."""

    conn: Conn
    eventlog: EventLog
    cause: Cause
    actor: str | None = None
    traceparent: str | None = None
    effects: list[Effect] = field(default_factory=list)

    @property
    def position(self) -> int:
        return self.cause.position if isinstance(self.cause, RecordedEvent) else 0

    @property
    def metadata(self) -> Metadata:
        return derive_metadata(self.cause, actor=self.actor, traceparent=self.traceparent)

    async def append(self, stream: str, events: Sequence[Event], *, expected: int | None = ANY) -> AppendResult:
        meta = self.metadata
        return await self.eventlog.append(stream, expected, [NewEvent(e, meta) for e in events], conn=self.conn)

    def after_commit(self, effect: Effect) -> None:
        self.effects.append(effect)


async def run_effects(effects: Sequence[Effect], *, where: str) -> int:
    """Run committed effects in order; log each failure (DPM-E035) and go on. Returns the failures."""
    failed = 0
    for effect in effects:
        try:
            await effect()
        except Exception as exc:
            failed += 1
            err = E.EFFECT_FAILED(where=where, effect=_name(effect), reason=repr(exc)[:500])
            log.error("%s %s", err.code, err.message, extra={"code": err.code})
    return failed


def _name(effect: Effect) -> str:
    inner: Any = getattr(effect, "func", effect)  # functools.partial
    return str(getattr(inner, "__qualname__", repr(inner)))


@contextlib.asynccontextmanager
async def unit_of_work(
    pool: AsyncConnectionPool[Conn],
    eventlog: EventLog,
    *,
    cause: Cause,
    actor: str | None = None,
    tracer: trace.Tracer | None = None,
    name: str = "round",
) -> AsyncIterator[UnitOfWork]:
    """A ``Ctx`` outside a consumer (timer rounds, sweeps): commit, then run the queued effects.

    ``cause`` is the run's stored ``Metadata`` (or an event), so what the round appends joins the
    run's conversation and trace; with a ``tracer`` the round is a span in that trace. If the body
    raises, the transaction rolls back, no effect runs and the error propagates."""
    with _span(tracer, name, cause) as traceparent:
        async with pool.connection() as conn, conn.transaction():
            ctx = UnitOfWork(conn, eventlog, cause, actor=actor, traceparent=traceparent)
            yield ctx
        await run_effects(ctx.effects, where=name)


@contextlib.contextmanager
def _span(tracer: trace.Tracer | None, name: str, cause: Cause) -> Iterator[str | None]:
    """A span continuing the cause's trace; yields its traceparent (None without a tracer)."""
    if tracer is None:
        yield None
        return
    meta = cause.metadata if isinstance(cause, RecordedEvent) else cause
    with tracer.start_as_current_span(name, context=context_from(meta.traceparent)):
        yield current_traceparent()


@dataclass(frozen=True)
class Bound:
    """A kernel handler with its dependencies bound by name (``Router.bind``); the consumer calls it
    with the logged event and the ``Ctx`` of the handler's transaction."""

    fn: Callable[..., Awaitable[None]]
    deps: dict[str, Any]
    actor: str | None = None  # the actor of what it appends; None: the cause's

    async def __call__(self, event: Event, ctx: Ctx) -> None:
        await self.fn(event, ctx, **self.deps)

    @property
    def name(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"
