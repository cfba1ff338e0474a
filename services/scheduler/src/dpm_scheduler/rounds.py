"""The periodic round: load -> decide -> save, in one transaction per step; then the effect drain
runs what the committed decisions asked for. Time comes from the clock given here, never from the
database, so the same rules run in the unit tests.

Each execution is decided in a ``Ctx`` built from the correlation and trace stored with its run,
inside a span of that trace: what a round appends (started, steps, watchdog failures, completion)
joins the run's conversation from the api request on. A failure inside one execution (a parameter
from before save-time validation, an overflow, a bug) fails that execution with DPM-E116 in its own
savepoint and the round goes on for every other one. Starting takes a transaction-scoped advisory
lock, so scheduler replicas never exceed the limit together.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.context import Effect as AfterCommit
from dpm_runtime.context import UnitOfWork, run_effects
from dpm_runtime.eventlog import NO_STREAM, Conn, EventLog, StreamConflict
from dpm_runtime.quarantine import is_connection_loss
from dpm_runtime.telemetry import context_from, current_traceparent
from dpm_scenarios import ExecutionState as S
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.effects_sql import Pending
from dpm_scheduler.adapters.executions_sql import ACTOR, ExecutionStore, run_metadata
from dpm_scheduler.adapters.power import EffectRunner
from dpm_scheduler.adapters.power_watch_sql import PowerWatches
from dpm_scheduler.domain.decide import (
    Decision,
    decide_effect_failed,
    decide_expired,
    decide_powered_off,
    decide_simulated_due,
    decide_start,
    decide_woken,
    internal_failure,
)
from dpm_scheduler.domain.effects import Effect, Reboot, SchedulePower, Shutdown, Wake
from dpm_scheduler.domain.execution import Execution, Limits
from dpm_scheduler.domain.sessions import decide_session
from dpm_schemas import E, Metadata, subjects
from dpm_schemas.events import ScheduleFired
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)
START_LOCK = 0x5C4ED  # advisory lock key: one scheduler replica starts executions at a time
Clock = Callable[[], datetime]
Decide = Callable[[Conn, Execution, datetime], Awaitable[Decision | None]]
WANTED_IN = {Wake: (S.WAITING_BOOT, S.WAITING_ONLINE), Reboot: (S.WAITING_BOOT,), Shutdown: (S.POWERING_OFF,)}


def _no_crash_point(effect: Effect) -> None:
    """Production: nothing happens between an effect's lease and its run."""


@dataclass
class Rounds:
    pool: AsyncConnectionPool[Conn]
    eventlog: EventLog
    store: ExecutionStore
    directory: Directory
    runner: EffectRunner
    clock: Clock
    limits: Limits
    tracer: trace.Tracer = field(default_factory=lambda: trace.get_tracer("dpm"))
    before_effect: Callable[[Effect], None] = _no_crash_point  # a test's forced crash point (settings)
    watches: PowerWatches | None = None  # operators' power-ons: their watch learns the wake-up went out

    async def tick(self) -> None:
        """Expire watchdogs, complete due simulated steps, start sessions, start what the limit allows."""
        await self._each(self.store.expired, self._expired, "watchdog")
        await self._each(self.store.simulated_due, self._simulated, "simulated step")
        await self._sessions()
        await self._start_queued()

    @contextlib.contextmanager
    def ctx(self, conn: Conn, x: Execution, name: str) -> Iterator[UnitOfWork]:
        """The ``Ctx`` of a round's work on ``x``: the run's stored causality, in a span of its trace."""
        attributes = {"dpm.execution_id": str(x.execution_id)}
        with self.tracer.start_as_current_span(name, context=context_from(x.traceparent), attributes=attributes):
            yield UnitOfWork(conn, self.eventlog, run_metadata(x), actor=ACTOR, traceparent=current_traceparent())

    async def _each(
        self, load: Callable[[Conn, datetime], Awaitable[list[Execution]]], decide: Decide, name: str
    ) -> None:
        effects: list[AfterCommit] = []
        async with self.pool.connection() as conn, conn.transaction():
            now = self.clock()
            for x in await load(conn, now):
                effects += await self._isolated(conn, x, name, lambda x=x: decide(conn, x, now))  # type: ignore[misc]
        await run_effects(effects, where=f"round {name}")

    async def _expired(self, conn: Conn, x: Execution, now: datetime) -> Decision | None:
        return decide_expired(x, now, self.limits, await self.directory.name(conn, x.machine_id))

    async def _simulated(self, conn: Conn, x: Execution, now: datetime) -> Decision | None:
        return decide_simulated_due(x, now)

    async def _started(self, conn: Conn, x: Execution, now: datetime) -> Decision | None:
        online = await self.directory.online(conn, x.machine_id)
        machine = await self.directory.name(conn, x.machine_id)
        return decide_start(x, online=online, now=now, limits=self.limits, machine=machine)

    async def _isolated(
        self, conn: Conn, x: Execution, name: str, decide: Callable[[], Awaitable[Decision | None]]
    ) -> list[AfterCommit]:
        """Decide and save one execution in a savepoint; anything but a conflict fails it alone
        (DPM-E116). Returns what to run once the round's transaction committed."""
        with self.ctx(conn, x, name) as ctx:
            try:
                async with conn.transaction():
                    await self.store.apply(ctx, await decide())
            except StreamConflict:
                raise  # another replica moved it: the round's transaction retries on the next tick
            except Exception as exc:
                if is_connection_loss(exc):
                    raise  # the database is away, not this execution wrong: the next round retries
                log.exception("execution %s failed inside the scheduler; failing it alone", x.execution_id)
                ctx.effects.clear()  # queued inside the savepoint that rolled back
                async with conn.transaction():
                    await self.store.apply(ctx, internal_failure(x, exc))
            return ctx.effects

    async def _start_queued(self) -> None:
        """Start what the limit allows; the wakes and reboots go to the outbox, sent after the commit
        (so pxe already sees the NetbootRequested when the machine asks what to boot)."""
        effects: list[AfterCommit] = []
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (START_LOCK,))
            free = self.limits.concurrency - await self.store.active_count(conn)
            now = self.clock()
            for x in await self.store.startable(conn, now, free) if free > 0 else []:
                effects += await self._isolated(conn, x, "start", lambda x=x: self._started(conn, x, now))  # type: ignore[misc]
        await run_effects(effects, where="round start")

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
                    if is_connection_loss(exc):
                        raise
                    log.exception("multicast session of scenario %s failed inside the scheduler", scenario_id)
                    for x in ready:
                        with self.ctx(conn, x, "session") as ctx:
                            await self.store.apply(ctx, internal_failure(x, exc))

    async def _session(self, conn: Conn, scenario_id: uuid.UUID, ready: list[Execution]) -> None:
        start_now = await self.store.take_start_now(conn, scenario_id)
        session_id = uuid.uuid4()
        d = decide_session(ready, start_now=start_now, now=self.clock(), limits=self.limits, session_id=session_id)
        if d is None:
            return
        first = d.members[0].execution
        with self.ctx(conn, first, "session") as ctx:
            stream = stream_id(subjects.SESSION, session_id)
            await self.store.append(ctx, first, [d.started], expected=NO_STREAM, stream=stream)
        for member in d.members:
            with self.ctx(conn, member.execution, "session") as ctx:
                await self.store.apply(ctx, member)

    # -- effects, after the commit --------------------------------------------------------------

    async def drain(self) -> int:
        """Run the committed effects, oldest first, each under a lease of this drain's connection,
        and record each outcome in its own transaction. Returns how many this drain ran."""
        ran = 0
        async with self.pool.connection() as session:
            for p in await self.store.outbox.pending(session):
                if not await self.store.outbox.lease(session, p):
                    continue  # another replica runs it, or ran it
                try:
                    self.before_effect(p.effect)  # committed and leased, not yet performed
                    await self._effect(p)
                    ran += 1
                finally:
                    await self.store.outbox.release(session, p)
        return ran

    async def _effect(self, p: Pending) -> None:
        name = f"effect {type(p.effect).__name__}"
        with self.tracer.start_as_current_span(name, context=context_from(p.traceparent)):
            if not await self._wanted(p.effect):  # its execution ended meanwhile: nothing to wake or stop
                async with self.pool.connection() as conn:
                    await self.store.outbox.done(conn, p.effect_id)
                return
            outcome = await self._run(p.effect)
            async with self.pool.connection() as conn, conn.transaction():
                if await self.store.outbox.done(conn, p.effect_id):
                    await self._outcome(conn, p.effect, outcome)

    async def _wanted(self, effect: Effect) -> bool:
        """An execution's effect still applies only while the execution waits for it (a guard: a
        wake repeated after a crash, or sent after the watchdog failed the execution, does nothing)."""
        execution_id = getattr(effect, "execution_id", None)
        if execution_id is None or isinstance(effect, SchedulePower):
            return True
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT state FROM {self.store.table} WHERE execution_id = %s", (execution_id,))
            row = await cur.fetchone()
        return row is None or S(row[0]) in WANTED_IN[type(effect)]

    async def _run(self, effect: Effect) -> object:
        try:
            if isinstance(effect, SchedulePower):
                return await self.runner.schedule_power(effect)
            return await self.runner.run(effect)
        except Exception as exc:  # one machine's failure never stops the others
            if is_connection_loss(exc):
                raise  # the database is away, the machine is not at fault: the effect stays for the next drain
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
            cause = Metadata.new(actor=f"schedule:{effect.name}", traceparent=current_traceparent())
            await UnitOfWork(conn, self.eventlog, cause).append(stream_id(subjects.FIRING, effect.schedule_id), [fired])
            return
        execution_id = getattr(effect, "execution_id", None)
        x = None if execution_id is None else await self.store.get(conn, execution_id)
        if x is None:  # an operator's power-on (its watch verifies the outcome), or a forgotten execution
            if isinstance(effect, Wake) and execution_id is None and outcome is None and self.watches:
                now = self.clock()
                deadline = now + timedelta(seconds=self.limits.power_on_timeout)
                await self.watches.sent(conn, effect.machine_id, deadline, now)
            return
        failure = outcome if isinstance(outcome, tuple) else None
        if isinstance(effect, Shutdown):
            d = decide_powered_off(x, failure)
        elif failure is not None:
            d = decide_effect_failed(x, failure)
        else:  # the wake-up or reboot went out: the power-on timeout counts from now
            d = decide_woken(x, self.clock(), self.limits)
        with self.ctx(conn, x, "effect outcome") as ctx:
            await self.store.apply(ctx, d)
