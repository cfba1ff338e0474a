"""Read models of scenarios and executions (``api.scenarios``, ``api.executions``): what operators
list, what assignment rules check, and the history per machine and per scenario."""

from __future__ import annotations

from collections.abc import Sequence

from dpm_runtime.eventlog import Conn
from dpm_scenarios import label_after
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionQueued,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
    MachineStatusCleared,
    ScenarioDeleted,
    ScenarioSaved,
    StepCancelRequested,
    StepReported,
    StepRequested,
)
from dpm_schemas.events.executions import StepStatus


class ScenarioList:
    name = "scenarios"
    schema = "api"
    tables = ("scenarios",)
    event_types = (ScenarioSaved.wire_name, ScenarioDeleted.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".scenarios (scenario_id uuid PRIMARY KEY, name text NOT NULL,'
            " revision int NOT NULL, kind text NOT NULL, spec jsonb NOT NULL, multicast_group text,"
            " deleted boolean NOT NULL DEFAULT false, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".scenarios'
        for rec in events:
            e = rec.event
            if isinstance(e, ScenarioSaved):
                group = e.spec.multicast.group if e.spec.multicast else None
                await conn.execute(
                    f"INSERT INTO {table} (scenario_id, name, revision, kind, spec, multicast_group, position)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (scenario_id) DO UPDATE SET"
                    " name = excluded.name, revision = excluded.revision, kind = excluded.kind, spec = excluded.spec,"
                    " multicast_group = excluded.multicast_group, deleted = false, position = excluded.position",
                    (
                        e.scenario_id,
                        e.name,
                        e.revision,
                        e.spec.kind.value,
                        e.spec.model_dump_json(),
                        group,
                        rec.position,
                    ),
                )
            elif isinstance(e, ScenarioDeleted):
                await conn.execute(
                    f"UPDATE {table} SET deleted = true, position = %s WHERE scenario_id = %s",
                    (rec.position, e.scenario_id),
                )


class ExecutionList:
    name = "executions"
    schema = "api"
    tables = ("executions",)
    event_types = tuple(
        cls.wire_name
        for cls in (
            ExecutionQueued,
            ExecutionStarted,
            ExecutionWaiting,
            ExecutionSuspended,
            StepCancelRequested,
            StepRequested,
            StepReported,
            ExecutionCompleted,
            ExecutionFailed,
            MachineStatusCleared,
        )
    )

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".executions (execution_id uuid PRIMARY KEY, run_id uuid NOT NULL,'
            " machine_id uuid NOT NULL, scenario_id uuid NOT NULL, revision int NOT NULL, scenario text NOT NULL,"
            " kind text NOT NULL, state text NOT NULL, percent int, code text, reason text,"
            " cleared boolean NOT NULL DEFAULT false, queued_at timestamptz NOT NULL, started_at timestamptz,"
            " ended_at timestamptz, position bigint NOT NULL);"
            f'CREATE INDEX IF NOT EXISTS executions_machine ON "{schema}".executions (machine_id, queued_at DESC);'
            f'CREATE INDEX IF NOT EXISTS executions_scenario ON "{schema}".executions (scenario_id, queued_at DESC);'
            # the live feed's reads of what changed since its last position (live.py)
            f'CREATE INDEX IF NOT EXISTS executions_position ON "{schema}".executions (position);'
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".executions'
        for rec in events:
            e, at, pos = rec.event, rec.occurred_at, rec.position
            if isinstance(e, ExecutionQueued):
                await self._queued(conn, table, e, rec)
            elif isinstance(e, ExecutionStarted):
                await self._set(conn, table, e.execution_id, pos, state=label_after(e), started_at=at)
            elif isinstance(e, ExecutionSuspended):
                code = None if e.confirmed else "unconfirmed"
                await self._set(
                    conn, table, e.execution_id, pos, state=label_after(e), code=code, reason=e.reason, ended_at=at
                )
            elif isinstance(e, StepCancelRequested | ExecutionWaiting | StepRequested):
                await self._set(conn, table, e.execution_id, pos, state=label_after(e))
            elif isinstance(e, StepReported) and e.status is StepStatus.PROGRESS and e.percent is not None:
                await self._set(conn, table, e.execution_id, pos, percent=e.percent)
            elif isinstance(e, ExecutionCompleted):
                await self._set(conn, table, e.execution_id, pos, state=label_after(e), percent=100, ended_at=at)
            elif isinstance(e, ExecutionFailed):
                await self._set(
                    conn, table, e.execution_id, pos, state=label_after(e), code=e.code, reason=e.reason, ended_at=at
                )
            elif isinstance(e, MachineStatusCleared):
                await conn.execute(
                    f"UPDATE {table} SET cleared = true, position = %s WHERE machine_id = %s"
                    " AND state IN ('failed', 'suspended')",
                    (pos, e.machine_id),
                )

    @staticmethod
    async def _queued(conn: Conn, table: str, e: ExecutionQueued, rec: RecordedEvent) -> None:
        await conn.execute(
            f"INSERT INTO {table} (execution_id, run_id, machine_id, scenario_id, revision, scenario, kind,"
            " state, queued_at, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (execution_id) DO NOTHING",
            (e.execution_id, e.run_id, e.machine_id, e.scenario_id, e.revision, e.name, e.spec.kind.value,
             label_after(e), rec.occurred_at, rec.position),
        )  # fmt: skip

    @staticmethod
    async def _set(conn: Conn, table: str, execution_id: object, position: int, **values: object) -> None:
        assignments = ", ".join(f"{k} = %s" for k in values)
        await conn.execute(
            f"UPDATE {table} SET {assignments}, position = %s WHERE execution_id = %s",
            (*values.values(), position, execution_id),
        )
