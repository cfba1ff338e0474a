"""A staged rollout's decisions (pure): who of a ring gets the package, and what comes after a ring
whose deliveries all ended -- the next ring, the end, or a halt when the failure rate passed the
limit (``failed / delivered > max_failure_rate``; a ring nobody needed passes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Next(StrEnum):
    RING = "ring"
    COMPLETE = "complete"
    HALT = "halt"


@dataclass(frozen=True, slots=True)
class RingEnd:
    after: Next
    failed: int
    delivered: int


def after_ring(outcomes: Sequence[bool], max_failure_rate: float, ring: int, rings: int) -> RingEnd:
    """``outcomes``: one per delivery of the ring (True: installed)."""
    failed, delivered = sum(1 for ok in outcomes if not ok), len(outcomes)
    if delivered and failed / delivered > max_failure_rate:
        return RingEnd(Next.HALT, failed, delivered)
    return RingEnd(Next.RING if ring + 1 < rings else Next.COMPLETE, failed, delivered)


def halt_message(ring_name: str, end: RingEnd, max_failure_rate: float) -> str:
    return (
        f"ring {ring_name}: {end.failed} of {end.delivered} failed, more than the limit of "
        f"{max_failure_rate:.0%}; the rings after it get nothing"
    )
