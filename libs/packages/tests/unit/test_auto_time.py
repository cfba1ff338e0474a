"""A machine's auto-update time as a wall-clock time in its zone: the latest such instant, across
midnight and daylight-saving changes, and a zone that does not exist refused with its code."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dpm_packages.auto_time import last_due, zone
from dpm_schemas import DpmError


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 12, 3, 1, 59, tzinfo=UTC), datetime(2026, 12, 2, 2, 0, tzinfo=UTC)),  # before today's 03:00 CET
        (datetime(2026, 12, 3, 2, 0, tzinfo=UTC), datetime(2026, 12, 3, 2, 0, tzinfo=UTC)),  # exactly then
        (datetime(2026, 7, 1, 12, 0, tzinfo=UTC), datetime(2026, 7, 1, 1, 0, tzinfo=UTC)),  # 03:00 CEST is 01:00 UTC
        (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),  # the spring change
    ],
)
def test_the_latest_wall_clock_time_in_the_zone(now: datetime, expected: datetime) -> None:
    assert last_due("03:00", "Europe/Berlin", now) == expected


def test_utc_and_an_unknown_zone() -> None:
    assert last_due("00:00", "UTC", datetime(2026, 12, 3, 0, 0, 1, tzinfo=UTC)) == datetime(2026, 12, 3, tzinfo=UTC)
    for bad in ("Mars/Olympus", "../etc/passwd", ""):
        with pytest.raises(DpmError) as err:
            zone(bad)
        assert err.value.code == "DPM-E285"
