"""The consumer's ack / nak / term decision, as a table (pure: no NATS, no PostgreSQL)."""

from __future__ import annotations

import pytest

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.outcome import Ack, Forged, Nak, Poison, Retry, Term, outcome
from dpm_schemas import E
from dpm_schemas.codec import DecodeError

SPEC = ConsumerSpec(durable="svc-x", handlers={}, max_deliver=4, backoff=0.5)
FORGED = Forged(E.FORGED_EVENT(subject="dpm.evt.x.Probe", event_id="e1", position=7))


@pytest.mark.parametrize(
    ("exc", "deliveries", "expected"),
    [
        (None, 1, Ack()),
        (None, 9, Ack()),  # handled on a late delivery is still handled
        (Retry("later", delay=2.0), 1, Nak(2.0)),
        (Retry("later", delay=2.0), 3, Nak(2.0)),
        (RuntimeError("boom"), 1, Nak(0.5, why="RuntimeError('boom')")),
        (RuntimeError("boom"), 3, Nak(2.0, why="RuntimeError('boom')")),
        (RuntimeError("boom"), 4, Term("failed 4 times: RuntimeError('boom')")),
        (Poison("never valid"), 1, Term("poison: never valid")),
        (DecodeError("bad msgpack"), 1, Term("undecodable: bad msgpack")),
        (FORGED, 1, Term(f"forged: DPM-E023 {FORGED.error.message}", forged=True)),
    ],
)
def test_outcome_table(exc: BaseException | None, deliveries: int, expected: object) -> None:
    assert outcome(exc, deliveries, SPEC) == expected


def test_backoff_doubles_per_delivery_and_is_capped() -> None:
    spec = ConsumerSpec(durable="svc-x", handlers={}, max_deliver=100, backoff=1.0)
    delays = [outcome(ValueError(), n, spec) for n in (1, 2, 3, 6, 7, 50)]
    assert [d.delay for d in delays if isinstance(d, Nak)] == [1.0, 2.0, 4.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize("deliveries", [4, 5, 12])
def test_a_retry_past_max_deliver_is_terminated_with_a_catalogued_reason_not_dropped(deliveries: int) -> None:
    verdict = outcome(Retry("image not there yet"), deliveries, SPEC)
    assert isinstance(verdict, Term) and not verdict.forged
    assert verdict.reason.startswith("DPM-E034 ")
    assert "svc-x" in verdict.reason and f"{deliveries} deliveries" in verdict.reason
    assert "image not there yet" in verdict.reason


def test_poison_and_forged_ignore_the_delivery_count() -> None:
    for deliveries in (1, 4, 40):
        assert isinstance(outcome(Poison("x"), deliveries, SPEC), Term)
        assert outcome(FORGED, deliveries, SPEC) == outcome(FORGED, 1, SPEC)
