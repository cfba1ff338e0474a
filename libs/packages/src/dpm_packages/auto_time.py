"""When a machine's auto-update time last came (pure): "03:00 Europe/Berlin" is a wall-clock time in
the machine's zone, so the instant moves with daylight saving time (a wall-clock time the change
skips is read at the offset before it, as zoneinfo does)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dpm_schemas import E


def zone(name: str) -> ZoneInfo:
    """The IANA zone, or DPM-E285."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise E.AUTO_UPDATE_TIME_INVALID(reason=f"{name!r} is not a time zone (e.g. UTC, Europe/Berlin)") from None


def last_due(at: str, timezone: str, now: datetime) -> datetime:
    """The latest instant <= ``now`` at which the wall clock in ``timezone`` showed ``at`` (HH:MM)."""
    tz = zone(timezone)
    local = now.astimezone(tz)
    hour, minute = (int(x) for x in at.split(":"))
    today = datetime.combine(local.date(), time(hour, minute), tzinfo=tz)
    return (
        today if today <= local else datetime.combine(local.date() - timedelta(days=1), time(hour, minute), tzinfo=tz)
    )
