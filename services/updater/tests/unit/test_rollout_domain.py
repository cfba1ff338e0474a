"""What follows a ring whose deliveries all ended: the next ring, the end, or a halt past the limit."""

from __future__ import annotations

import pytest

from dpm_updater.domain.rollouts import Next, after_ring, halt_message


@pytest.mark.parametrize(
    ("outcomes", "limit", "ring", "after"),
    [
        ([True], 0.0, 0, Next.RING),
        ([False], 0.0, 0, Next.HALT),
        ([True, False, True, True], 0.25, 0, Next.RING),  # exactly at the limit passes
        ([True, False, False, True], 0.25, 0, Next.HALT),
        ([], 0.0, 0, Next.RING),  # nobody needed it
        ([True, True], 0.0, 1, Next.COMPLETE),  # the last ring
        ([False], 1.0, 1, Next.COMPLETE),  # a limit of 100 % never halts
    ],
)
def test_after_a_ring(outcomes: list[bool], limit: float, ring: int, after: Next) -> None:
    end = after_ring(outcomes, limit, ring, rings=2)
    assert (end.after, end.failed, end.delivered) == (after, outcomes.count(False), len(outcomes))


def test_the_halt_says_which_ring_and_how_many() -> None:
    end = after_ring([False, True], 0.1, 0, rings=3)
    assert (
        halt_message("canary", end, 0.1)
        == "ring canary: 1 of 2 failed, more than the limit of 10%; the rings after it get nothing"
    )
