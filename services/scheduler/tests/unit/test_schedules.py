"""When a schedule fires next (pure): one-shot once, cron in its own time zone, disabled never."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from dpm_scheduler.schedules import next_fire
from dpm_schemas.events import ScheduleSaved
from dpm_schemas.events.schedules import ScheduleAction

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def schedule(**fields) -> ScheduleSaved:
    return ScheduleSaved(schedule_id=uuid.uuid4(), name="s", action=ScheduleAction.POWER_OFF, group="lab", **fields)


def test_one_shot_fires_once() -> None:
    at = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    assert next_fire(schedule(at=at), NOW) == at
    assert next_fire(schedule(at=at), at) is None


def test_cron_fires_in_its_time_zone() -> None:
    # 22:00 in Tokyo is 13:00 UTC
    assert next_fire(schedule(cron="0 22 * * *", timezone="Asia/Tokyo"), NOW) == datetime(
        2026, 11, 24, 13, 0, tzinfo=UTC
    )
    # weekdays only: Tuesday 24 Nov 2026 at noon -> the same day 22:00 UTC
    assert next_fire(schedule(cron="0 22 * * 1-5"), NOW) == datetime(2026, 11, 24, 22, 0, tzinfo=UTC)


def test_a_disabled_schedule_never_fires() -> None:
    assert next_fire(schedule(cron="* * * * *", enabled=False), NOW) is None


def test_a_cron_that_never_fires_stays_idle_instead_of_raising() -> None:
    # saved before the api refused it (DPM-E166): February 30th
    assert next_fire(schedule(cron="0 0 30 2 *"), NOW) is None
