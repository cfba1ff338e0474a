"""The execution engine: queued executions start within the server-wide concurrency limit, machines
are woken or rebooted into the network boot, the step is requested, and the execution ends on the
step's report -- or on a watchdog: no network boot after power-on (DPM-E112), no agent (DPM-E113),
no step report (DPM-E145).

State lives in ``scheduler.executions``, changed in the same transaction as the events that say so,
so a crash at any point resumes from the last commit: a restart neither loses an execution nor
starts one twice. Starting takes a transaction-scoped advisory lock, so scheduler replicas never
exceed the limit together.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from nats.aio.client import Client as NATS
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.eventlog import ANY_VERSION, NO_STREAM, Conn, EventLog, StreamConflict
from dpm_scheduler.handlers import power_target
from dpm_scheduler.power.agent import agent_action
from dpm_scheduler.power.driver import PowerDriver
from dpm_scheduler.power.wol import Spacing
from dpm_schemas import E, Metadata, NewEvent, RecordedEvent, subjects
from dpm_schemas.agent_protocol import Action
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionQueued,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
    MachineBooted,
    MachineCameOnline,
    MulticastSessionStarted,
    MulticastStartRequested,
    NetbootCleared,
    NetbootRequested,
    ScenarioRunRequested,
    StepCancelRequested,
    StepReported,
    StepRequested,
    SuspendRequested,
)
from dpm_schemas.events.executions import StartAction, StepStatus
from dpm_schemas.events.scenarios import UNAVAILABLE_KINDS, ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id
from dpm_schemas.planning import Refuse, Start, Wait, plan_start, session_start
from dpm_schemas.subjects import durable_name

log = logging.getLogger(__name__)

ACTOR = "scheduler"
ACTIVE = ("waiting_boot", "waiting_online", "ready", "running", "suspending")  # each holds a slot
START_LOCK = 0x5C4ED  # advisory lock key: one scheduler replica starts executions at a time
NAMESPACE = uuid.UUID("1b7e0f0c-6a55-4c52-9d59-0a8f4c3c5e11")


def execution_id(run_id: uuid.UUID, machine_id: uuid.UUID) -> uuid.UUID:
    """One execution per run and machine, so a redelivered run request creates nothing twice."""
    return uuid.uuid5(NAMESPACE, f"{run_id}:{machine_id}")


def ddl(schema: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{schema}".executions ('
        " execution_id uuid PRIMARY KEY, run_id uuid NOT NULL, machine_id uuid NOT NULL, name text NOT NULL,"
        " spec jsonb NOT NULL, state text NOT NULL, queued_at bigint NOT NULL, not_before timestamptz,"
        " deadline timestamptz, step_due timestamptz, netboot boolean NOT NULL DEFAULT false)",
        f'ALTER TABLE "{schema}".executions ADD COLUMN IF NOT EXISTS scenario_id uuid',
        f'ALTER TABLE "{schema}".executions ADD COLUMN IF NOT EXISTS ready_since timestamptz',
        f'CREATE TABLE IF NOT EXISTS "{schema}".start_now ('
        " scenario_id uuid PRIMARY KEY, requested_at timestamptz NOT NULL)",
        f'CREATE INDEX IF NOT EXISTS executions_state ON "{schema}".executions (state, queued_at)',
        f'CREATE INDEX IF NOT EXISTS executions_machine ON "{schema}".executions (machine_id, state)',
    ]


@dataclass(frozen=True)
class Limits:
    concurrency: int = 5
    power_on_timeout: float = 600.0
    no_response_timeout: float = 1800.0
    suspend_timeout: float = 600.0  # the original advises about 10 minutes for an interrupt to complete


@dataclass
class Engine:
    pool: AsyncConnectionPool[Conn]
    eventlog: EventLog
    nc: NATS
    driver: PowerDriver
    spacing: Spacing
    schema: str
    limits: Limits

    @property
    def table(self) -> str:
        return f'"{self.schema}".executions'

    # -- reactions -------------------------------------------------------------------------------

    async def run_requested(self, rec: RecordedEvent, conn: Conn) -> None:
        assert isinstance(rec.event, ScenarioRunRequested)
        await self.queue(conn, rec.event, rec.position, rec)

    async def queue(self, conn: Conn, e: ScenarioRunRequested, order: int, cause: RecordedEvent | None) -> None:
        """An execution per machine of the run (operator's or a schedule's), in ``order`` among runs."""
        over = _beyond_max_targets(e.spec)
        for index, machine_id in enumerate(e.machine_ids):
            eid = execution_id(e.run_id, machine_id)
            queued = ExecutionQueued(
                execution_id=eid,
                run_id=e.run_id,
                machine_id=machine_id,
                scenario_id=e.scenario_id,
                revision=e.revision,
                name=e.name,
                spec=e.spec,
            )
            try:
                async with conn.transaction():  # savepoint: a redelivery only skips what exists
                    await self._append(conn, eid, [queued], cause, expected=NO_STREAM)
                    await conn.execute(
                        f"INSERT INTO {self.table} (execution_id, run_id, machine_id, name, spec, state, queued_at,"
                        " not_before, scenario_id) VALUES (%s, %s, %s, %s, %s, 'queued', %s, %s, %s)",
                        (
                            eid,
                            e.run_id,
                            machine_id,
                            e.name,
                            e.spec.model_dump_json(),
                            order,
                            e.not_before,
                            e.scenario_id,
                        ),
                    )
            except StreamConflict:
                continue
            if e.spec.kind in UNAVAILABLE_KINDS:  # saved before dpm refused them: fail now, never netboot
                err = E.KIND_NOT_AVAILABLE(kind=e.spec.kind.value, reason="refused at run, nothing was started")
                await self._finish(conn, eid, machine_id, False, (err.code, err.message), cause)
                continue
            if over is not None and index >= over:  # seed catalog SE-05(b): the extra machines fail at once
                name = await self._machine_name(conn, machine_id)
                err = E.MULTICAST_TARGETS_EXCEEDED(scenario=e.name, max_targets=over, machine=name)
                await self._finish(conn, eid, machine_id, False, (err.code, err.message), cause)

    async def machine_booted(self, rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MachineBooted)
        cur = await conn.execute(
            f'SELECT machine_id FROM "{self.schema}".machine_directory WHERE %s = ANY(macs) AND NOT deleted', (e.mac,)
        )
        row = await cur.fetchone()
        if row is not None:
            await self._arrived(conn, row[0], Wait.BOOT, rec)

    async def came_online(self, rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MachineCameOnline)
        await self._arrived(conn, e.machine_id, Wait.ONLINE, rec)

    async def step_reported(self, rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, StepReported)
        cur = await conn.execute(
            f"SELECT machine_id, netboot, state FROM {self.table} WHERE execution_id = %s"
            " AND state IN ('waiting_boot', 'running', 'suspending') FOR UPDATE",
            (e.execution_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return  # late or duplicate report: the execution already ended
        machine_id, netboot, state = row
        if state == Wait.BOOT:  # a report from the deploy environment proves the network boot
            await self._arrived(conn, machine_id, Wait.BOOT, rec)
        if state == "suspending":
            if e.status is not StepStatus.PROGRESS:  # the step stopped: the interrupt is complete
                await self._suspend(conn, e.execution_id, machine_id, netboot, True, "the step stopped", rec)
            return
        if e.status is StepStatus.PROGRESS:
            await self._set(conn, e.execution_id, "running", deadline=self.limits.no_response_timeout)
        elif e.status is StepStatus.COMPLETED:
            await self._finish(conn, e.execution_id, machine_id, netboot, None, rec)
        else:
            await self._finish(conn, e.execution_id, machine_id, netboot, (e.code or "DPM-E145", e.message), rec)

    async def suspend_requested(self, rec: RecordedEvent, conn: Conn) -> None:
        """Interrupt, phase one: what has not reached its step stops at once; a running step is asked
        to stop and has the suspend timeout to confirm (phase two: its final report, or the watchdog)."""
        e = rec.event
        assert isinstance(e, SuspendRequested)
        row = await (
            await conn.execute(
                f"SELECT machine_id, netboot, state, spec FROM {self.table} WHERE execution_id = %s FOR UPDATE",
                (e.execution_id,),
            )
        ).fetchone()
        if row is None or row[2] not in ("queued", *ACTIVE) or row[2] == "suspending":
            return  # already over, or already being interrupted
        machine_id, netboot, state, raw = row
        spec = ScenarioSpec.model_validate(raw)
        if state != "running" or spec.kind is ScenarioKind.SIMULATED:
            await self._suspend(conn, e.execution_id, machine_id, netboot, True, f"interrupted while {state}", rec)
            return
        cancel = StepCancelRequested(execution_id=e.execution_id, machine_id=machine_id, step=spec.kind.value)
        await self._append(conn, e.execution_id, [cancel], rec)
        await self._set(conn, e.execution_id, "suspending", deadline=self.limits.suspend_timeout)

    async def _suspend(
        self,
        conn: Conn,
        eid: uuid.UUID,
        machine_id: uuid.UUID,
        netboot: bool,
        confirmed: bool,
        reason: str,
        cause: RecordedEvent | None,
    ) -> None:
        events: list[object] = []
        if netboot:
            events.append(NetbootCleared(machine_id=machine_id, execution_id=eid, reason="suspended"))
        events.append(ExecutionSuspended(execution_id=eid, machine_id=machine_id, confirmed=confirmed, reason=reason))
        await self._append(conn, eid, events, cause)
        await self._set(conn, eid, "suspended")

    def consumer(self) -> ConsumerSpec:
        return ConsumerSpec(
            durable=durable_name("scheduler", "executions"),
            handlers={
                ScenarioRunRequested: self.run_requested,
                MachineBooted: self.machine_booted,
                MachineCameOnline: self.came_online,
                StepReported: self.step_reported,
                MulticastStartRequested: self.start_now,
                SuspendRequested: self.suspend_requested,
            },
        )

    # -- the periodic round ------------------------------------------------------------------------

    async def tick(self) -> None:
        """Expire watchdogs, complete due simulated steps, start what the limit allows."""
        await self._expire()
        await self._complete_simulated()
        await self._start_sessions()
        await self._start_queued()

    async def _expire(self) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT execution_id, machine_id, state, netboot, spec FROM {self.table}"
                f" WHERE state = ANY(%s) AND deadline < now() FOR UPDATE SKIP LOCKED",
                (list(ACTIVE),),
            )
            for eid, machine_id, state, netboot, spec in await cur.fetchall():
                expire = functools.partial(self._expire_one, conn, eid, machine_id, netboot, state, spec)
                await self._isolated(conn, eid, machine_id, netboot, expire)

    async def _expire_one(
        self, conn: Conn, eid: uuid.UUID, machine_id: uuid.UUID, netboot: bool, state: str, spec: dict[str, object]
    ) -> None:
        name = await self._machine_name(conn, machine_id)
        if state == "suspending":
            reason = (
                f"{name} did not confirm the interrupt within {round(self.limits.suspend_timeout)} s;"
                " force clear it once it is safe"
            )
            await self._suspend(conn, eid, machine_id, netboot, False, reason, None)
            return
        if state == Wait.BOOT:
            err = E.NETBOOT_NOT_DETECTED(machine=name, timeout=round(self.limits.power_on_timeout))
        elif state == Wait.ONLINE:
            err = E.POWER_ON_FAILED(machine=name, timeout=round(self.limits.power_on_timeout))
        else:
            timeout = min(self.limits.no_response_timeout, ScenarioSpec.model_validate(spec).timeout_seconds)
            err = E.NO_RESPONSE(machine=name, timeout=round(timeout), phase=f"step {spec['kind']}")
        await self._finish(conn, eid, machine_id, netboot, (err.code, err.message), None)

    async def _isolated(
        self,
        conn: Conn,
        eid: uuid.UUID,
        machine_id: uuid.UUID,
        netboot: bool,
        step: Callable[[], Awaitable[object]],
    ) -> None:
        """Advance one execution in a savepoint of the round's transaction. Whatever goes wrong in it
        (a parameter from before save-time validation, an overflow, a bug) fails that execution with
        DPM-E116 and the round goes on for every other one: one bad execution never wedges them all."""
        try:
            async with conn.transaction():
                await step()
        except StreamConflict:
            raise  # another replica moved it: the round's transaction retries on the next tick
        except Exception as exc:
            log.exception("execution %s failed inside the scheduler; failing it alone", eid)
            err = E.EXECUTION_INTERNAL(execution_id=eid, reason=f"{type(exc).__name__}: {exc}"[:300])
            async with conn.transaction():
                await self._finish(conn, eid, machine_id, netboot, (err.code, err.message), None)

    async def _complete_simulated(self) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT execution_id, machine_id FROM {self.table}"
                " WHERE state = 'running' AND step_due < now() FOR UPDATE SKIP LOCKED LIMIT 500"
            )
            for eid, machine_id in await cur.fetchall():
                done = functools.partial(self._finish, conn, eid, machine_id, False, None, None)
                await self._isolated(conn, eid, machine_id, False, done)

    async def _start_sessions(self) -> None:
        """Start the multicast sessions whose condition is met, one scenario at a time."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (START_LOCK,))
            cur = await conn.execute(
                f"SELECT scenario_id, count(*), extract(epoch FROM now() - min(ready_since)), min(spec::text)"
                f" FROM {self.table} WHERE state = 'ready' GROUP BY scenario_id"
            )
            for scenario_id, ready, waited, raw in await cur.fetchall():
                try:
                    async with conn.transaction():
                        await self._session_of(conn, scenario_id, ready, float(waited), raw)
                except StreamConflict:
                    raise
                except Exception as exc:  # this scenario's machines fail; other sessions still start
                    log.exception("multicast session of scenario %s failed inside the scheduler", scenario_id)
                    await self._fail_ready(conn, scenario_id, exc)

    async def _fail_ready(self, conn: Conn, scenario_id: uuid.UUID, exc: Exception) -> None:
        rows = await (
            await conn.execute(
                f"SELECT execution_id, machine_id, netboot FROM {self.table}"
                " WHERE state = 'ready' AND scenario_id = %s",
                (scenario_id,),
            )
        ).fetchall()
        for eid, machine_id, netboot in rows:
            err = E.EXECUTION_INTERNAL(execution_id=eid, reason=f"{type(exc).__name__}: {exc}"[:300])
            await self._finish(conn, eid, machine_id, netboot, (err.code, err.message), None)

    async def _session_of(self, conn: Conn, scenario_id: uuid.UUID, ready: int, waited: float, raw: str) -> None:
        spec = ScenarioSpec.model_validate_json(raw)
        assert spec.multicast is not None
        now = await (
            await conn.execute(
                f'DELETE FROM "{self.schema}".start_now WHERE scenario_id = %s RETURNING 1', (scenario_id,)
            )
        ).fetchone()
        decision = session_start(
            ready=ready,
            waited=waited,
            max_targets=spec.multicast.max_targets,
            max_wait=spec.multicast.max_wait_seconds,
            start_now=now is not None,
            limit=self.limits.concurrency,
        )
        if decision is not None:
            await self._open_session(conn, scenario_id, spec, decision.take, decision.reason)

    async def _open_session(
        self, conn: Conn, scenario_id: uuid.UUID, spec: ScenarioSpec, take: int, reason: str
    ) -> None:
        assert spec.multicast is not None
        rows = await (
            await conn.execute(
                f"SELECT execution_id, machine_id, netboot FROM {self.table} WHERE state = 'ready' AND scenario_id = %s"
                " ORDER BY ready_since, execution_id FOR UPDATE",
                (scenario_id,),
            )
        ).fetchall()
        members = rows[:take]  # the rest wait for the next session
        session_id = uuid.uuid4()
        started = MulticastSessionStarted(
            session_id=session_id,
            scenario_id=scenario_id,
            group=spec.multicast.group,
            machine_ids=tuple(r[1] for r in members),
            execution_ids=tuple(r[0] for r in members),
            reason=reason,
        )
        await self._append_to(conn, stream_id(subjects.SESSION, session_id), [started], expected=NO_STREAM)
        for eid, machine_id, _netboot in members:
            step = StepRequested(
                execution_id=eid, machine_id=machine_id, step=spec.kind.value, spec=spec, session_id=session_id
            )
            await self._append(conn, eid, [step], None)
            await self._set(conn, eid, "running", deadline=self._step_timeout(spec))

    async def start_now(self, rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MulticastStartRequested)
        await conn.execute(
            f'INSERT INTO "{self.schema}".start_now (scenario_id, requested_at) VALUES (%s, now())'
            " ON CONFLICT (scenario_id) DO NOTHING",
            (e.scenario_id,),
        )

    async def _start_queued(self) -> None:
        """Start what the limit allows. The machines are woken or rebooted only after the commit, so
        pxe can already see the NetbootRequested when they ask what to boot."""
        to_bring_in: list[tuple[uuid.UUID, uuid.UUID, Start]] = []
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (START_LOCK,))
            row = await (
                await conn.execute(f"SELECT count(*) FROM {self.table} WHERE state = ANY(%s)", (list(ACTIVE),))
            ).fetchone()
            free = self.limits.concurrency - (row[0] if row else 0)
            if free <= 0:
                return
            cur = await conn.execute(
                f"SELECT execution_id, machine_id, spec, name FROM {self.table} q WHERE state = 'queued'"
                " AND (not_before IS NULL OR not_before <= now())"
                f" AND NOT EXISTS (SELECT 1 FROM {self.table} a WHERE a.machine_id = q.machine_id"
                " AND a.state = ANY(%s)) ORDER BY queued_at, execution_id LIMIT %s",
                (list(ACTIVE), free),
            )
            started: set[uuid.UUID] = set()
            for eid, machine_id, spec, scenario in await cur.fetchall():
                if machine_id in started:  # one execution per machine at a time
                    continue
                started.add(machine_id)
                start = functools.partial(self._start_row, conn, eid, machine_id, spec, scenario, to_bring_in)
                await self._isolated(conn, eid, machine_id, False, start)
        for eid, machine_id, plan in to_bring_in:
            try:
                async with self.pool.connection() as conn:
                    failure = await self._bring_in(conn, machine_id, plan)
            except Exception as exc:  # the wake or reboot of one machine never stops the others
                log.exception("bringing in the machine of execution %s failed", eid)
                err = E.EXECUTION_INTERNAL(execution_id=eid, reason=f"{type(exc).__name__}: {exc}"[:300])
                failure = err.code, err.message
            if failure is not None:
                async with self.pool.connection() as conn, conn.transaction():
                    row = await (
                        await conn.execute(f"SELECT state FROM {self.table} WHERE execution_id = %s FOR UPDATE", (eid,))
                    ).fetchone()
                    if row is not None and row[0] == plan.wait.value:
                        await self._finish(conn, eid, machine_id, plan.netboot, failure, None)

    async def _start_row(
        self,
        conn: Conn,
        eid: uuid.UUID,
        machine_id: uuid.UUID,
        raw: dict[str, object],
        scenario: str,
        to_bring_in: list[tuple[uuid.UUID, uuid.UUID, Start]],
    ) -> None:
        plan = await self._start(conn, eid, machine_id, ScenarioSpec.model_validate(raw), scenario)
        if plan is not None and plan.action is not StartAction.RUN:
            to_bring_in.append((eid, machine_id, plan))

    async def _start(
        self, conn: Conn, eid: uuid.UUID, machine_id: uuid.UUID, spec: ScenarioSpec, scenario: str
    ) -> Start | None:
        row = await (
            await conn.execute(f'SELECT online FROM "{self.schema}".presence WHERE machine_id = %s', (machine_id,))
        ).fetchone()
        plan = plan_start(spec, online=bool(row and row[0]))
        if isinstance(plan, Refuse):
            name = await self._machine_name(conn, machine_id)
            err = E.NETBOOT_NEEDS_REBOOT(machine=name, scenario=scenario, kind=spec.kind.value)
            await self._finish(conn, eid, machine_id, False, (err.code, err.message), None)
            return None
        events: list[object] = [ExecutionStarted(execution_id=eid, machine_id=machine_id, action=plan.action)]
        if plan.netboot:  # committed before the machine is woken: pxe must know what to serve it
            events.append(NetbootRequested(machine_id=machine_id, execution_id=eid))
        if plan.wait is Wait.NOTHING and spec.multicast is not None:
            await self._append(conn, eid, events, None)
            await self._ready(conn, eid, machine_id, None)
            return plan
        if plan.wait is Wait.NOTHING:
            events.append(StepRequested(execution_id=eid, machine_id=machine_id, step=spec.kind.value, spec=spec))
        await self._append(conn, eid, events, None)
        deadline = self.limits.power_on_timeout if plan.wait is not Wait.NOTHING else self._step_timeout(spec)
        step_due = _simulated_seconds(spec) if plan.wait is Wait.NOTHING else None
        await self._set(conn, eid, plan.wait.value, deadline=deadline, step_due=step_due, netboot=plan.netboot)
        return plan

    async def _bring_in(self, conn: Conn, machine_id: uuid.UUID, plan: Start) -> tuple[str, str] | None:
        """Wake or reboot the machine; a failure to even send is the execution's failure."""
        if plan.action is StartAction.WAKE:
            target = await power_target(conn, self.schema, machine_id)
            if target is None:
                err = E.MACHINE_NOT_FOUND(machine_id=machine_id)
                return err.code, err.message
            await self.spacing.wait()
            await self.driver.power_on(target)
        elif plan.action is StartAction.REBOOT:
            return await agent_action(self.nc, machine_id, Action.REBOOT, timeout=30)
        return None

    # -- helpers -------------------------------------------------------------------------------

    async def _arrived(self, conn: Conn, machine_id: uuid.UUID, wait: Wait, cause: RecordedEvent) -> None:
        cur = await conn.execute(
            f"SELECT execution_id, spec FROM {self.table} WHERE machine_id = %s AND state = %s FOR UPDATE",
            (machine_id, wait.value),
        )
        row = await cur.fetchone()
        if row is None:
            return
        eid, raw = row
        spec = ScenarioSpec.model_validate(raw)
        if spec.multicast is not None:
            await self._ready(conn, eid, machine_id, cause)
            return
        step = StepRequested(execution_id=eid, machine_id=machine_id, step=spec.kind.value, spec=spec)
        await self._append(conn, eid, [step], cause)
        await self._set(conn, eid, "running", deadline=self._step_timeout(spec))

    async def _ready(self, conn: Conn, eid: uuid.UUID, machine_id: uuid.UUID, cause: RecordedEvent | None) -> None:
        """The machine is where its multicast step needs it: it waits for its session (no deadline)."""
        await self._append(conn, eid, [ExecutionWaiting(execution_id=eid, machine_id=machine_id)], cause)
        await conn.execute(
            f"UPDATE {self.table} SET state = 'ready', ready_since = now(), deadline = NULL WHERE execution_id = %s",
            (eid,),
        )

    async def _finish(
        self,
        conn: Conn,
        eid: uuid.UUID,
        machine_id: uuid.UUID,
        netboot: bool,
        failure: tuple[str, str] | None,
        cause: RecordedEvent | None,
    ) -> None:
        events: list[object] = []
        if netboot:
            events.append(NetbootCleared(machine_id=machine_id, execution_id=eid, reason="execution ended"))
        if failure is None:
            power_off = await self._power_off_at_end(conn, eid, machine_id, netboot)
            events.append(ExecutionCompleted(execution_id=eid, machine_id=machine_id, power_off=power_off))
        else:
            events.append(
                ExecutionFailed(execution_id=eid, machine_id=machine_id, code=failure[0], reason=failure[1][:500])
            )
        await self._append(conn, eid, events, cause)
        await self._set(conn, eid, "failed" if failure else "completed")

    async def _power_off_at_end(self, conn: Conn, eid: uuid.UUID, machine_id: uuid.UUID, netboot: bool) -> str | None:
        """Shut the machine down through its agent when the scenario says so (agent kinds only)."""
        row = await (await conn.execute(f"SELECT spec FROM {self.table} WHERE execution_id = %s", (eid,))).fetchone()
        if row is None or netboot or not ScenarioSpec.model_validate(row[0]).power_off_at_end:
            return None
        failure = await agent_action(self.nc, machine_id, Action.SHUTDOWN, timeout=5)
        return "sent" if failure is None else failure[0]

    def _step_timeout(self, spec: ScenarioSpec) -> float:
        return float(min(self.limits.no_response_timeout, spec.timeout_seconds))

    async def _set(
        self,
        conn: Conn,
        eid: uuid.UUID,
        state: str,
        *,
        deadline: float | None = None,
        step_due: float | None = None,
        netboot: bool | None = None,
    ) -> None:
        await conn.execute(
            f"UPDATE {self.table} SET state = %s, deadline = now() + %s, step_due = now() + %s,"
            " netboot = coalesce(%s, netboot) WHERE execution_id = %s",
            (
                state,
                timedelta(seconds=deadline) if deadline is not None else None,
                timedelta(seconds=step_due) if step_due is not None else None,
                netboot,
                eid,
            ),
        )

    async def _append(
        self,
        conn: Conn,
        eid: uuid.UUID,
        events: list[object],
        cause: RecordedEvent | None,
        *,
        expected: int | None = ANY_VERSION,
    ) -> None:
        await self._append_to(conn, stream_id(subjects.EXECUTION, eid), events, cause, expected=expected)

    async def _append_to(
        self,
        conn: Conn,
        sid: str,
        events: list[object],
        cause: RecordedEvent | None = None,
        *,
        expected: int | None = ANY_VERSION,
    ) -> None:
        meta = Metadata.new(actor=ACTOR)
        if cause is not None:
            meta = Metadata(correlation_id=cause.metadata.correlation_id, actor=ACTOR).caused_by(cause)
        await self.eventlog.append(sid, expected, [NewEvent(e, meta) for e in events], conn=conn)  # type: ignore[arg-type]

    async def _machine_name(self, conn: Conn, machine_id: uuid.UUID) -> str:
        row = await (
            await conn.execute(
                f'SELECT name FROM "{self.schema}".machine_directory WHERE machine_id = %s', (machine_id,)
            )
        ).fetchone()
        return str(row[0]) if row else str(machine_id)


def _beyond_max_targets(spec: ScenarioSpec) -> int | None:
    """A multicast remote update runs on at most max targets machines of a run; restores queue the rest."""
    if spec.kind is ScenarioKind.REMOTE_UPDATE and spec.multicast is not None:
        return spec.multicast.max_targets
    return None


def _simulated_seconds(spec: ScenarioSpec) -> float | None:
    if spec.kind is not ScenarioKind.SIMULATED:
        return None
    try:
        return max(0.0, float(spec.param("seconds", "1")))
    except ValueError:
        return 1.0
