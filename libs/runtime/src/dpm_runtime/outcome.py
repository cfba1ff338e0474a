"""What a consumer does with a message once its handler returned or raised: a pure decision.

``outcome(exc, deliveries, spec)`` is ``Ack``, ``Nak(delay)`` or ``Term(reason)``; the runner only
carries it out (``consumer.py``). Table-tested in tests/unit/test_outcome.py:

- handled (``exc is None``) -> ack;
- ``Retry`` -> nak after its delay; past ``max_deliver`` deliveries -> term, dead-lettered and
  logged (DPM-E034). JetStream would stop redelivering at ``max_deliver + 1`` by itself: without
  this the event was silently dropped;
- any other error -> nak with exponential backoff (``backoff * 2**(n-1)``, capped at 30 s); past
  ``max_deliver`` -> term, dead-lettered;
- ``Poison``, an undecodable body, a forged message -> term at once (forged ones are dead-lettered
  without the event they claim: the log never held it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpm_schemas import E
from dpm_schemas.codec import DecodeError
from dpm_schemas.errors import DpmError

if TYPE_CHECKING:
    from dpm_runtime.consumer import ConsumerSpec

MAX_DELAY = 30.0


class Retry(Exception):
    """Raise from a handler to have the event redelivered after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Poison(Exception):
    """Raise from a handler when the event can never be handled: it is terminated, not retried."""


class Forged(Exception):
    """The message names an event the log does not hold (DPM-E023), or holds as another type or on
    another stream (DPM-E026); ``error`` says which."""

    def __init__(self, error: DpmError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Nak:
    delay: float
    why: str = ""  # set for an unexpected error (logged); empty for a handler's own Retry


@dataclass(frozen=True)
class Term:
    reason: str  # kept in dpm_dead_letters and logged
    forged: bool = False  # the dead letter names no event: the log never held the one claimed


Outcome = Ack | Nak | Term


def outcome(exc: BaseException | None, deliveries: int, spec: ConsumerSpec) -> Outcome:
    """The verdict on a message delivered ``deliveries`` times whose handling raised ``exc`` (pure)."""
    if exc is None:
        return Ack()
    if isinstance(exc, Forged):
        return Term(f"forged: {exc.error.code} {exc.error.message}", forged=True)
    if isinstance(exc, DecodeError):
        return Term(f"undecodable: {exc}")
    if isinstance(exc, Poison):
        return Term(f"poison: {exc}")
    exhausted = deliveries >= spec.max_deliver
    if isinstance(exc, Retry):
        if exhausted:
            err = E.RETRIES_EXHAUSTED(consumer=spec.durable, deliveries=deliveries, reason=str(exc))
            return Term(f"{err.code} {err.message}")
        return Nak(exc.delay)
    if exhausted:
        return Term(f"failed {deliveries} times: {exc!r}")
    return Nak(min(MAX_DELAY, spec.backoff * 2 ** (deliveries - 1)), why=repr(exc))
