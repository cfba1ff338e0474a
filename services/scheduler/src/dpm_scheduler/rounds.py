"""The periodic round: load -> decide -> save, in one transaction per step; then the effect drain
runs what the committed decisions asked for. Time comes from the clock given here, never from the
database, so the same rules run in the unit tests.

A failure inside one execution (a parameter from before save-time validation, an overflow, a bug)
fails that execution with DPM-E116 in its own savepoint and the round goes on for every other one.
Starting takes a transaction-scoped advisory lock, so scheduler replicas never exceed the limit together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from dpm_runtime.eventlog import ANY_VERSION, NO_STREAM, Conn, EventLog, StreamConflict
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.executions_sql import ExecutionStore
from dpm_scheduler.adapters.power import EffectRunner
from dpm_scheduler.domain.decide import (
    Decision,
    decide_effect_failed,
    decide_expired,
    decide_powered_off,
    decide_simulated_due,
    decide_start,
    internal_failure,
)
from dpm_scheduler.domain.effects import Effect, SchedulePower, Shutdown
from dpm_scheduler.domain.execution import Execution, Limits
from dpm_scheduler.domain.sessions import decide_session
from dpm_schemas import E, Metadata, NewEvent, subjects
from dpm_schemas.events import ScheduleFired
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)
START_LOCK = 0x5C4ED  # advisory lock key: one scheduler replica starts executions at a time
Clock = Callable[[], datetime]


@dataclass
class Rounds:
    pool: AsyncConnectionPool[Conn]
    eventlog: EventLog
    store: ExecutionStore
    directory: Directory
    runner: EffectRunner
    clock: Clock
    limits: Limits

    async def tick(self) -> None:
        """Expire watchdogs, complete due simulated steps, start sessions, start what the limit allows."""
        await self._each(self.store.expired, self._expired)
        await self._each(self.store.simulated_due, self._simulated)
        await self._sessions()
        await self._start_queued()

    async def _each(
        self,
        load: Callable[[Conn, datetime], Awaitable[list[Execution]]],
        decide: Callable[[Conn, Execution, datetime], Awaitable[Decision | None]],
    ) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            now = self.clock()
            for x in await load(conn, now):
                await self._isolated(conn, x, lambda x=x: decide(conn, x, now))  # type: ignore[misc]

    async def _expired(self, conn: Conn, x: Execution, now: datetime) -> Decision | None:
        return decide_expired(x, now, self.limits, await self.directory.name(conn, x.machine_id))

    async def _simulated(self, conn: Conn, x: Execution, now: datetime) -> Decision | None:
        return decide_simulated_due(x, now)

    async def _started(self, conn: Conn, x: Execution, now: datetime) -> Decision | None:
        online = await self.directory.online(conn, x.machine_id)
        machine = await self.directory.name(conn, x.machine_id)
        return decide_start(x, online=online, now=now, limits=self.limits, machine=machine)

    async def _isolated(self, conn: Conn, x: Execution, decide: Callable[[], Awaitable[Decision | None]]) -> None:
        """Decide and save one execution in a savepoint; anything but a conflict fails it alone (DPM-E116)."""
        try:
            async with conn.transaction():
                await self.store.apply(conn, await decide(), None)
        except StreamConflict:
            raise  # another replica moved it: the round's transaction retries on the next tick
        except Exception as exc:
            log.exception("execution %s failed inside the scheduler; failing it alone", x.execution_id)
            async with conn.transaction():
                await self.store.apply(conn, internal_failure(x, exc), None)

    async def _start_queued(self) -> None:
        """Start what the limit allows; the wakes and reboots go to the outbox, sent after the commit
        (so pxe already sees the NetbootRequested when the machine asks what to boot)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (START_LOCK,))
            free = self.limits.concurrency - await self.store.active_count(conn)
            if free <= 0:
                return
            now = self.clock()
            for x in await self.store.startable(conn, now, free):
                await self._isolated(conn, x, lambda x=x: self._started(conn, x, now))  # type: ignore[misc]

    async def _sessions(self) -> None:
        """Start the multicast sessions whose condition is met, one scenario at a time."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (START_LOCK,))
            for scenario_id, ready in (await self.store.ready(conn)).items():
                try:
                    async with conn.transaction():
                        await self._session(conn, scenario_id, ready)
                except StreamConflict:
                    raise
                except Exception as exc:  # this scenario's machines fail; other sessions still start
                    log.exception("multicast session of scenario %s failed inside the scheduler", scenario_id)
                    for x in ready:
                        await self.store.apply(conn, internal_failure(x, exc), None)

    async def _session(self, conn: Conn, scenario_id: uuid.UUID, ready: list[Execution]) -> None:
        start_now = await self.store.take_start_now(conn, scenario_id)
        session_id = uuid.uuid4()
        d = decide_session(ready, start_now=start_now, now=self.clock(), limits=self.limits, session_id=session_id)
        if d is None:
            return
        first = d.members[0].execution
        await self.store.append(
            conn, first, [d.started], None, expected=NO_STREAM, stream=stream_id(subjects.SESSION, session_id)
        )
        for member in d.members:
            await self.store.apply(conn, member, None)

    # -- effects, after the commit --------------------------------------------------------------

    async def drain(self) -> int:
        """Run the committed effects, oldest first, and record each outcome in its own transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            claimed = await self.store.outbox.claim(conn, self.clock())
        for effect_id, effect in claimed:
            outcome = await self._run(effect)
            async with self.pool.connection() as conn, conn.transaction():
                if await self.store.outbox.done(conn, effect_id):
                    await self._outcome(conn, effect, outcome)
        return len(claimed)

    async def _run(self, effect: Effect) -> object:
        try:
            if isinstance(effect, SchedulePower):
                return await self.runner.schedule_power(effect)
            return await self.runner.run(effect)
        except Exception as exc:  # one machine's failure never stops the others
            log.exception("effect %r failed", effect)
            eid = getattr(effect, "execution_id", None) or uuid.UUID(int=0)
            err = E.EXECUTION_INTERNAL(execution_id=eid, reason=f"{type(exc).__name__}: {exc}"[:300])
            return [] if isinstance(effect, SchedulePower) else (err.code, err.message)

    async def _outcome(self, conn: Conn, effect: Effect, outcome: object) -> None:
        if isinstance(effect, SchedulePower):
            failures = tuple(outcome) if isinstance(outcome, list) else ()
            fired = ScheduleFired(
                schedule_id=effect.schedule_id, action=effect.action, machine_ids=effect.machine_ids, failures=failures
            )
            meta = Metadata.new(actor=f"schedule:{effect.name}")
            sid = stream_id(subjects.FIRING, effect.schedule_id)
            await self.eventlog.append(sid, ANY_VERSION, [NewEvent(fired, meta)], conn=conn)
            return
        execution_id = getattr(effect, "execution_id", None)
        if execution_id is None:
            return  # an operator's power-on: its watch verifies the outcome
        x = await self.store.get(conn, execution_id)
        if x is None:
            return
        failure = outcome if isinstance(outcome, tuple) else None
        if isinstance(effect, Shutdown):
            await self.store.apply(conn, decide_powered_off(x, failure), None)
        elif failure is not None:
            await self.store.apply(conn, decide_effect_failed(x, failure), None)
