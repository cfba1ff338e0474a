"""When the imager tells the api how much room the store has: at start, then only on a real move
(1 % or 64 MiB) or once the last report is an hour old, so an idle store adds about an event an hour."""

from __future__ import annotations

from dpm_imager.adapters.space import FRESH_SECONDS, MOVED_BYTES, worth_reporting

GIB = 1 << 30


def test_the_first_measurement_and_an_old_report_are_always_sent() -> None:
    assert worth_reporting(None, 5 * GIB, 0.0)
    assert worth_reporting(5 * GIB, 5 * GIB, FRESH_SECONDS)


def test_small_moves_are_not_sent_and_large_ones_are() -> None:
    assert not worth_reporting(5 * GIB, 5 * GIB - MOVED_BYTES + 1, 10.0)
    assert worth_reporting(5 * GIB, 5 * GIB - MOVED_BYTES, 10.0)
    big = 1000 * GIB  # 1 % of a large store is more than 64 MiB
    assert not worth_reporting(big, big - 5 * GIB, 10.0) and worth_reporting(big, big - 10 * GIB, 10.0)
    assert worth_reporting(-1, -1 - MOVED_BYTES, 10.0)  # under the reserve still moves
