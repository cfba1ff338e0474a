"""When a schedule fires next (pure, ``domain/schedules.next_fire``): one-shot once, cron in its own
time zone, disabled never. ``now`` is a parameter, so every case is a row of a table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from dpm_scheduler.domain.schedules import next_fire
from dpm_schemas.events import ScheduleSaved
from dpm_schemas.events.schedules import ScheduleAction

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday
AT = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)


def schedule(**fields: Any) -> ScheduleSaved:
    return ScheduleSaved(schedule_id=uuid.uuid4(), name="s", action=ScheduleAction.POWER_OFF, group="lab", **fields)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


CASES = [
    # (why, fields, now, expected)
    ("one-shot, ahead: its time", {"at": AT}, NOW, AT),
    ("one-shot, at its time: fired already", {"at": AT}, AT, None),
    ("one-shot, past", {"at": AT}, utc(2026, 11, 25, 0, 0), None),
    ("one-shot without a zone is UTC", {"at": datetime(2026, 11, 24, 22, 0)}, NOW, AT),
    ("one-shot in another zone", {"at": datetime.fromisoformat("2026-11-25T07:00+09:00")}, NOW, AT),
    (
        "cron in Tokyo: 22:00 JST is 13:00 UTC",
        {"cron": "0 22 * * *", "timezone": "Asia/Tokyo"},
        NOW,
        utc(2026, 11, 24, 13),
    ),
    ("cron, weekdays: the same Tuesday", {"cron": "0 22 * * 1-5"}, NOW, AT),
    ("cron, weekdays: Friday night -> Monday", {"cron": "0 22 * * 1-5"}, utc(2026, 11, 27, 23), utc(2026, 11, 30, 22)),
    ("cron, every minute: the next one", {"cron": "* * * * *"}, NOW, utc(2026, 11, 24, 12, 1)),
    ("cron, strictly after now", {"cron": "0 12 * * *"}, NOW, utc(2026, 11, 25, 12)),
    (
        "cron across a DST change (Berlin, 29 Mar 2026)",
        {"cron": "0 3 * * *", "timezone": "Europe/Berlin"},
        utc(2026, 3, 28, 12),
        utc(2026, 3, 29, 1),
    ),
    ("cron in winter time (Berlin)", {"cron": "0 3 * * *", "timezone": "Europe/Berlin"}, NOW, utc(2026, 11, 25, 2)),
    ("disabled cron never fires", {"cron": "* * * * *", "enabled": False}, NOW, None),
    ("disabled one-shot never fires", {"at": AT, "enabled": False}, NOW, None),
    ("neither time nor cron", {}, NOW, None),
    ("a cron that never matches (30 February) stays idle", {"cron": "0 0 30 2 *"}, NOW, None),
    ("an unparsable cron stays idle", {"cron": "not a cron"}, NOW, None),
    ("an unknown time zone stays idle", {"cron": "0 22 * * *", "timezone": "Mars/Olympus"}, NOW, None),
]


@pytest.mark.parametrize(("fields", "now", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_next_fire(fields: dict[str, Any], now: datetime, expected: datetime | None) -> None:
    assert next_fire(schedule(**fields), now) == expected


def test_the_next_firing_is_in_utc() -> None:
    fire = next_fire(schedule(cron="0 22 * * *", timezone="Asia/Tokyo"), NOW)
    assert fire is not None and fire.utcoffset() is not None and fire.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_it_reads_no_clock() -> None:
    """The same schedule and ``now`` give the same answer, whatever the time is."""
    s = schedule(cron="*/5 * * * *")
    assert {next_fire(s, NOW) for _ in range(3)} == {utc(2026, 11, 24, 12, 5)}
