"""When a schedule fires next (pure): one-shot once, cron in its own time zone, disabled never.

The firing itself (targets, skips, the run or the power action) is I/O and lives in the round,
``schedules.py``, with its SQL in ``adapters/schedules_sql.py``; this is the rule the round and the
consumer share with the tests: ``now`` is a parameter, so a table of cases runs without a clock.
A cron expression that finds no firing in ``MAX_YEARS`` never fires (the api refuses it since
DPM-E166; one saved before stays idle instead of stopping the other schedules).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from dpm_schemas.events import ScheduleSaved

MAX_YEARS = 5


def next_fire(schedule: ScheduleSaved, after: datetime) -> datetime | None:
    """When ``schedule`` fires next after ``after``; None: never (disabled, past, or no match)."""
    if not schedule.enabled:
        return None
    if schedule.at is not None:
        at = schedule.at if schedule.at.tzinfo else schedule.at.replace(tzinfo=UTC)
        return at if at > after else None
    if schedule.cron is None:
        return None
    try:
        local = after.astimezone(ZoneInfo(schedule.timezone))
        fire: datetime = croniter(schedule.cron, local, max_years_between_matches=MAX_YEARS).get_next(datetime)
    except (CroniterBadDateError, CroniterBadCronError, ValueError, KeyError):
        return None
    return fire.astimezone(UTC)
