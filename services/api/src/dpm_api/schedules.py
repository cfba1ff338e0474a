"""Schedules on the api side: validation, the definitions' events, and their read model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from dpm_api import handlers, scenarios
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import AppendResult, Conn, EventLog, StreamConflict
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
    """Validate and append a new schedule (a new stream: its id is fresh)."""
    await validate(conn, s)
    return await _append(log, conn, s, None, actor=actor)


async def validate(conn: Conn, s: ScheduleSaved) -> None:
    """The definition's rules; the scenario and the group must exist now (machines are resolved by id
    before this), so a schedule never fires into nothing."""
    check(s, datetime.now(UTC))
    if s.scenario_id is not None:
        await scenarios.find(conn, str(s.scenario_id))
    if s.group is not None and not await handlers.group_exists(conn, s.group):
        raise E.GROUP_NOT_FOUND(name=s.group)


async def current(log: EventLog, conn: Conn, schedule_id: uuid.UUID) -> tuple[ScheduleSaved, int]:
    """The schedule's last definition and its stream's version (what an edit is based on), read from
    the log in the caller's transaction: DPM-E183 when it never existed or was deleted."""
    history = await log.read_stream(stream_id(subjects.SCHEDULE, schedule_id), conn=conn)
    saved = [r.event for r in history if isinstance(r.event, ScheduleSaved)]
    if not saved or isinstance(history[-1].event, ScheduleDeleted):
        raise E.SCHEDULE_NOT_FOUND(schedule_id=schedule_id)
    return saved[-1], history[-1].stream_version


async def replace(
    log: EventLog, conn: Conn, s: ScheduleSaved, *, expected: int | None, actor: str
) -> tuple[AppendResult, ScheduleSaved]:
    """A new definition for an existing schedule (same id), validated as a new one. ``expected``: the
    version the change was based on (None: the current one); either way the append is conditional on
    the version read here, so a concurrent edit is refused (DPM-E184), never overwritten."""
    _old, version = await current(log, conn, s.schedule_id)
    _same_version(s.schedule_id, version, expected)
    await validate(conn, s)
    return await _append(log, conn, s, version, actor=actor), s


async def set_enabled(
    log: EventLog, conn: Conn, schedule_id: uuid.UUID, enabled: bool, *, expected: int | None, actor: str
) -> tuple[AppendResult | None, ScheduleSaved, int]:
    """Pause or resume: the current definition saved again with ``enabled`` (None appended when it
    already is). A resumed schedule is validated again (a one-shot whose time passed while paused
    would never fire: DPM-E148); the scheduler computes its next firing from the resume, so the
    firings missed while paused are not made up."""
    old, version = await current(log, conn, schedule_id)
    _same_version(schedule_id, version, expected)
    if old.enabled == enabled:
        return None, old, version
    new = old.model_copy(update={"enabled": enabled})
    if enabled:
        await validate(conn, new)
    done = await _append(log, conn, new, version, actor=actor)
    return done, new, done.stream_version


def _same_version(schedule_id: uuid.UUID, current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise E.SCHEDULE_CONFLICT(schedule_id=schedule_id, current=current, expected=expected)


async def _append(log: EventLog, conn: Conn, s: ScheduleSaved, version: int | None, *, actor: str) -> AppendResult:
    sid = stream_id(subjects.SCHEDULE, s.schedule_id)
    try:
        return await log.append(sid, version, [NewEvent(s, command_metadata(actor))], conn=conn)
    except StreamConflict:  # another edit committed between the read and this append
        raise E.SCHEDULE_CONFLICT(schedule_id=s.schedule_id, current="newer", expected=version) from None


async def delete(log: EventLog, conn: Conn, schedule_id: uuid.UUID, *, actor: str) -> AppendResult:
    row = await (await conn.execute("SELECT 1 FROM api.schedules WHERE schedule_id = %s", (schedule_id,))).fetchone()
    if row is None:
        raise E.SCHEDULE_NOT_FOUND(schedule_id=schedule_id)
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
