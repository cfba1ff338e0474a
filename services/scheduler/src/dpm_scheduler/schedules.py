"""Schedules: fire one-shot and cron schedules -- scenario runs, power on, power off.

A firing skips every machine that is in a scenario, and records why (seed catalog §3.2: "power-on /
shutdown by schedule is skipped if the machine is running a scenario"). The next firing time is
kept in ``scheduler.schedules`` and advanced in the same transaction as the events of the firing,
so a crash neither loses nor repeats one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_scheduler import handlers
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.domain.effects import SchedulePower
from dpm_schemas import Metadata, NewEvent, RecordedEvent, codec, subjects
from dpm_schemas.events import (
    ScenarioDeleted,
    ScenarioRunRequested,
    ScenarioSaved,
    ScheduleDeleted,
    ScheduleFired,
    ScheduleSaved,
    ScheduleSkipped,
)
from dpm_schemas.events.schedules import ScheduleAction
from dpm_schemas.ids import stream_id
from dpm_schemas.subjects import durable_name

log = logging.getLogger(__name__)
MAX_YEARS = 5  # a cron expression that finds no firing in this many years never fires (the api refuses it)


def next_fire(schedule: ScheduleSaved, after: datetime) -> datetime | None:
    """When ``schedule`` fires next after ``after`` (pure). One-shot: its time, once; cron: in its zone."""
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
        # saved before the api refused it (``0 0 30 2 *``): it never fires, and never stops the others
        log.warning("schedule %s (%r) has no next firing; it stays idle", schedule.name, schedule.cron)
        return None
    return fire.astimezone(UTC)


def ddl(schema: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{schema}".schedules (schedule_id uuid PRIMARY KEY, payload bytea NOT NULL,'
        " next_at timestamptz, position bigint NOT NULL)",
        f'CREATE INDEX IF NOT EXISTS schedules_due ON "{schema}".schedules (next_at)',
        f'CREATE TABLE IF NOT EXISTS "{schema}".scenario_directory (scenario_id uuid PRIMARY KEY,'
        " payload bytea NOT NULL, deleted boolean NOT NULL DEFAULT false, position bigint NOT NULL)",
    ]


@dataclass
class Schedules:
    pool: AsyncConnectionPool[Conn]
    eventlog: EventLog
    store: ExecutionStore
    directory: Directory
    clock: Callable[[], datetime]

    @property
    def schema(self) -> str:
        return self.directory.schema

    # -- the definitions -------------------------------------------------------------------------

    async def saved(self, rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, ScheduleSaved)
        await conn.execute(
            f'INSERT INTO "{self.schema}".schedules (schedule_id, payload, next_at, position) VALUES (%s, %s, %s, %s)'
            " ON CONFLICT (schedule_id) DO UPDATE SET payload = excluded.payload, next_at = excluded.next_at,"
            f' position = excluded.position WHERE "{self.schema}".schedules.position < excluded.position',
            (e.schedule_id, codec.encode_payload(e), next_fire(e, self.clock()), rec.position),
        )

    async def deleted(self, rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, ScheduleDeleted)
        await conn.execute(f'DELETE FROM "{self.schema}".schedules WHERE schedule_id = %s', (e.schedule_id,))

    async def scenario(self, rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, ScenarioSaved | ScenarioDeleted)
        payload = codec.encode_payload(e) if isinstance(e, ScenarioSaved) else b""
        await conn.execute(
            f'INSERT INTO "{self.schema}".scenario_directory (scenario_id, payload, deleted, position)'
            " VALUES (%s, %s, %s, %s) ON CONFLICT (scenario_id) DO UPDATE SET"
            " payload = CASE WHEN excluded.deleted THEN scenario_directory.payload ELSE excluded.payload END,"
            f" deleted = excluded.deleted, position = excluded.position"
            f' WHERE "{self.schema}".scenario_directory.position < excluded.position',
            (e.scenario_id, payload, isinstance(e, ScenarioDeleted), rec.position),
        )

    def consumer(self) -> ConsumerSpec:
        return ConsumerSpec(
            durable=durable_name("scheduler", "schedules"),
            handlers={
                ScheduleSaved: self.saved,
                ScheduleDeleted: self.deleted,
                ScenarioSaved: self.scenario,
                ScenarioDeleted: self.scenario,
            },
        )

    # -- firing ---------------------------------------------------------------------------------

    async def fire_due(self) -> int:
        fired = 0
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f'SELECT schedule_id, payload FROM "{self.schema}".schedules WHERE next_at <= %s'
                " ORDER BY next_at FOR UPDATE SKIP LOCKED LIMIT 20",
                (self.clock(),),
            )
            for schedule_id, payload in await cur.fetchall():
                schedule = codec.decode_payload("ScheduleSaved", 1, bytes(payload))
                assert isinstance(schedule, ScheduleSaved)
                await self._fire(conn, schedule)
                await conn.execute(
                    f'UPDATE "{self.schema}".schedules SET next_at = %s WHERE schedule_id = %s',
                    (next_fire(schedule, self.clock()), schedule_id),
                )
                fired += 1
        return fired

    async def _fire(self, conn: Conn, s: ScheduleSaved) -> None:
        targets = await self._targets(conn, s)
        busy = await self._busy(conn, targets)
        skipped = [
            ScheduleSkipped(schedule_id=s.schedule_id, machine_id=m, reason=f"{busy[m]}; the {s.action} is skipped")
            for m in targets
            if m in busy
        ]
        free = [m for m in targets if m not in busy]
        fired: list[ScheduleFired | ScheduleSkipped] = []
        if s.action is ScheduleAction.RUN:
            fired.append(await self._run(conn, s, free))
        else:  # sent after the commit; the ScheduleFired with the failures is recorded with the outcome
            power = SchedulePower(schedule_id=s.schedule_id, name=s.name, action=s.action, machine_ids=tuple(free))
            await self.store.outbox.put(conn, (power,))
            self.store.kick.set()
        events = [NewEvent(e, Metadata.new(actor=f"schedule:{s.name}")) for e in (*skipped, *fired)]
        if events:
            await self.eventlog.append(stream_id(subjects.FIRING, s.schedule_id), ANY_VERSION, events, conn=conn)
        log.info("schedule %s fired: %s on %d machine(s), %d skipped", s.name, s.action, len(free), len(skipped))

    async def _run(self, conn: Conn, s: ScheduleSaved, machines: list[uuid.UUID]) -> ScheduleFired | ScheduleSkipped:
        row = await (
            await conn.execute(
                f'SELECT payload, deleted FROM "{self.schema}".scenario_directory WHERE scenario_id = %s',
                (s.scenario_id,),
            )
        ).fetchone()
        if row is None or row[1]:
            return ScheduleSkipped(schedule_id=s.schedule_id, machine_id=None, reason="its scenario was deleted")
        scenario = codec.decode_payload("ScenarioSaved", 1, bytes(row[0]))
        assert isinstance(scenario, ScenarioSaved)
        run_id = uuid.uuid4()
        if machines:
            request = ScenarioRunRequested(
                run_id=run_id,
                scenario_id=scenario.scenario_id,
                revision=scenario.revision,
                name=scenario.name,
                spec=scenario.spec,
                machine_ids=tuple(machines),
            )
            order = await (await conn.execute("SELECT coalesce(max(position), 0) + 1 FROM events")).fetchone()
            meta = Metadata.new(actor="scheduler")
            await handlers.queue(
                conn,
                request,
                order=int(order[0]) if order else 0,
                cause=None,
                meta=meta,
                store=self.store,
                directory=self.directory,
            )
        return ScheduleFired(schedule_id=s.schedule_id, action=s.action, machine_ids=tuple(machines), run_id=run_id)

    async def _targets(self, conn: Conn, s: ScheduleSaved) -> list[uuid.UUID]:
        targets = list(s.machine_ids)
        if s.group:
            targets += await self.directory.of_group(conn, s.group)
        return list(dict.fromkeys(targets))

    async def _busy(self, conn: Conn, machines: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        return {m: f"it is running scenario {name}" for m, name in (await self.store.busy(conn, machines)).items()}
