"""Schedules on the api side: validation, the definitions' events, and their read model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from dpm_api import handlers, scenarios
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import AppendResult, Conn, EventLog
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import ScheduleDeleted, ScheduleSaved
from dpm_schemas.events.schedules import ScheduleAction
from dpm_schemas.ids import stream_id

MAX_YEARS = 5  # the scheduler looks as far ahead (dpm_scheduler.domain.schedules.MAX_YEARS)


def check(s: ScheduleSaved, now: datetime) -> None:
    if (s.at is None) == (s.cron is None):
        raise E.SCHEDULE_INVALID(reason="give exactly one of at (one-shot) and cron (recurring)")
    if s.at is not None and (s.at if s.at.tzinfo else s.at.replace(tzinfo=UTC)) <= now:
        raise E.SCHEDULE_INVALID(reason=f"{s.at.isoformat()} is in the past")
    if s.cron is not None and (len(s.cron.split()) != 5 or not croniter.is_valid(s.cron)):
        raise E.SCHEDULE_INVALID(reason=f"{s.cron!r} is not a five-field cron expression")
    try:
        zone = ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise E.SCHEDULE_INVALID(reason=f"unknown time zone {s.timezone!r}") from None
    if s.cron is not None:
        check_fires(s.cron, now.astimezone(zone))
    if s.action is ScheduleAction.RUN and s.scenario_id is None:
        raise E.SCHEDULE_INVALID(reason="a run schedule needs a scenario")
    if not s.machine_ids and not s.group:
        raise E.SCHEDULE_INVALID(reason="name machines or a group")


def check_fires(cron: str, now: datetime) -> None:
    """A valid expression may still never fire (``0 0 30 2 *``: February 30th); it would be accepted
    and silently do nothing. Refused (DPM-E166) unless it fires within MAX_YEARS."""
    try:
        croniter(cron, now, max_years_between_matches=MAX_YEARS).get_next(datetime)
    except CroniterBadDateError:
        raise E.CRON_NEVER_FIRES(cron=cron, years=MAX_YEARS) from None


async def save(log: EventLog, conn: Conn, s: ScheduleSaved, *, actor: str) -> AppendResult:
    """Validate and append; the scenario and the group must exist now (machines are resolved by id
    before this), so a schedule never fires into nothing."""
    check(s, datetime.now(UTC))
    if s.scenario_id is not None:
        await scenarios.find(conn, str(s.scenario_id))
    if s.group is not None and not await handlers.group_exists(conn, s.group):
        raise E.GROUP_NOT_FOUND(name=s.group)
    return await log.append(
        stream_id(subjects.SCHEDULE, s.schedule_id), None, [NewEvent(s, command_metadata(actor))], conn=conn
    )


async def delete(log: EventLog, conn: Conn, schedule_id: uuid.UUID, *, actor: str) -> AppendResult:
    row = await (await conn.execute("SELECT 1 FROM api.schedules WHERE schedule_id = %s", (schedule_id,))).fetchone()
    if row is None:
        raise E.SCHEDULE_INVALID(reason=f"no schedule {schedule_id}")
    return await log.append(
        stream_id(subjects.SCHEDULE, schedule_id),
        None,
        [NewEvent(ScheduleDeleted(schedule_id=schedule_id), command_metadata(actor))],
        conn=conn,
    )


class ScheduleList:
    name = "schedules"
    schema = "api"
    tables = ("schedules",)
    event_types = (ScheduleSaved.wire_name, ScheduleDeleted.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".schedules (schedule_id uuid PRIMARY KEY, name text NOT NULL,'
            " definition jsonb NOT NULL, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".schedules'
        for rec in events:
            e = rec.event
            if isinstance(e, ScheduleSaved):
                await conn.execute(
                    f"INSERT INTO {table} (schedule_id, name, definition, position) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (schedule_id) DO UPDATE SET name = excluded.name, definition = excluded.definition,"
                    " position = excluded.position",
                    (e.schedule_id, e.name, e.model_dump_json(), rec.position),
                )
            elif isinstance(e, ScheduleDeleted):
                await conn.execute(f"DELETE FROM {table} WHERE schedule_id = %s", (e.schedule_id,))
