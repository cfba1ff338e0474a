"""The schedules' round: fire the due one-shot and cron schedules -- scenario runs, power on, power off.

A firing skips every machine that is in a scenario, and records why (seed catalog §3.2: "power-on /
shutdown by schedule is skipped if the machine is running a scenario"). The next firing time
(``domain/schedules.next_fire``, from this round's clock) is advanced in the same transaction as the
events of the firing, so a crash neither loses nor repeats one. A power action goes to the effect
outbox and is sent after the commit; its ScheduleFired is recorded with the outcome (``rounds``).

Each firing is a conversation of its own (actor ``schedule:<name>``) in a span of its own: the
executions it queues keep that correlation and trace for their rounds, as an operator's run keeps
the api request's. A run waits until the scenario directory has applied the schedule's definition,
so it never starts a revision older than the one the schedule was saved against.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.checkpoint import applied_position
from dpm_runtime.context import Effect as AfterCommit
from dpm_runtime.context import UnitOfWork, run_effects
from dpm_runtime.eventlog import Conn, EventLog
from dpm_runtime.telemetry import current_traceparent
from dpm_scheduler import handlers
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.adapters.schedules_sql import Due, ScheduleTable
from dpm_scheduler.domain.effects import SchedulePower
from dpm_scheduler.domain.schedules import next_fire
from dpm_scheduler.projections import SCENARIOS
from dpm_schemas import Metadata, subjects
from dpm_schemas.events import ScenarioRunRequested, ScheduleFired, ScheduleSaved, ScheduleSkipped
from dpm_schemas.events.schedules import ScheduleAction
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)


@dataclass
class Firing:
    pool: AsyncConnectionPool[Conn]
    eventlog: EventLog
    store: ExecutionStore
    directory: Directory
    schedules: ScheduleTable
    clock: Callable[[], datetime]
    tracer: trace.Tracer = field(default_factory=lambda: trace.get_tracer("dpm"))

    async def fire_due(self) -> int:
        """Fire what is due by now, advance each, commit, then run what the firings queued."""
        fired, effects = 0, list[AfterCommit]()
        async with self.pool.connection() as conn, conn.transaction():
            now = self.clock()
            directory_at = await applied_position(conn, SCENARIOS) or 0
            for due in await self.schedules.due(conn, now):
                if not self._ready(due, directory_at):
                    continue  # the next round fires it, once the scenario directory caught up
                effects += await self._fire(conn, due.schedule)
                await self.schedules.advance(conn, due.schedule.schedule_id, next_fire(due.schedule, now))
                fired += 1
        await run_effects(effects, where="schedules")
        return fired

    @staticmethod
    def _ready(due: Due, directory_at: int) -> bool:
        return due.schedule.action is not ScheduleAction.RUN or directory_at >= due.position

    @contextlib.contextmanager
    def _ctx(self, conn: Conn, s: ScheduleSaved) -> Iterator[UnitOfWork]:
        """A new conversation and trace for this firing."""
        with self.tracer.start_as_current_span(
            f"schedule {s.name}", attributes={"dpm.schedule_id": str(s.schedule_id)}
        ):
            yield UnitOfWork(
                conn, self.eventlog, Metadata.new(actor=f"schedule:{s.name}"), traceparent=current_traceparent()
            )

    async def _fire(self, conn: Conn, s: ScheduleSaved) -> list[AfterCommit]:
        with self._ctx(conn, s) as ctx:
            targets = await self._targets(conn, s)
            busy = await self.store.busy(conn, targets)
            skipped: list[ScheduleFired | ScheduleSkipped] = [
                ScheduleSkipped(
                    schedule_id=s.schedule_id,
                    machine_id=m,
                    reason=f"it is running scenario {busy[m]}; the {s.action} is skipped",
                )
                for m in targets
                if m in busy
            ]
            free = [m for m in targets if m not in busy]
            if s.action is ScheduleAction.RUN:
                skipped.append(await self._run(ctx, s, free))
            else:  # sent after the commit; the ScheduleFired with the failures is recorded with the outcome
                power = SchedulePower(schedule_id=s.schedule_id, name=s.name, action=s.action, machine_ids=tuple(free))
                await self.store.outbox.put(conn, (power,), ctx.metadata.traceparent)
                ctx.after_commit(self.store.wake_drain)
            if skipped:
                await ctx.append(stream_id(subjects.FIRING, s.schedule_id), skipped)
            log.info("schedule %s fired: %s on %d machine(s), %d busy", s.name, s.action, len(free), len(busy))
            return ctx.effects

    async def _run(
        self, ctx: UnitOfWork, s: ScheduleSaved, machines: list[uuid.UUID]
    ) -> ScheduleFired | ScheduleSkipped:
        """Queue a run of the scenario's current revision on the free machines."""
        scenario = await self.schedules.scenario(ctx.conn, s.scenario_id) if s.scenario_id else None
        if scenario is None:
            return ScheduleSkipped(schedule_id=s.schedule_id, machine_id=None, reason="its scenario was deleted")
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
            order = await self.schedules.next_order(ctx.conn)
            await handlers.queue(ctx, request, order=order, store=self.store, directory=self.directory)
        return ScheduleFired(schedule_id=s.schedule_id, action=s.action, machine_ids=tuple(machines), run_id=run_id)

    async def _targets(self, conn: Conn, s: ScheduleSaved) -> list[uuid.UUID]:
        targets = list(s.machine_ids)
        if s.group:
            targets += await self.directory.of_group(conn, s.group)
        return list(dict.fromkeys(targets))
