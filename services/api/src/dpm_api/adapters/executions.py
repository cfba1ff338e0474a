"""Queries of the executions read model (runs.ExecutionList): the history the routes list, export
and stream. The SQL lived in the route; here a route only shapes what it gets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dpm_runtime.eventlog import Conn
from dpm_schemas.errors import CATALOGUE

KEYS = ("execution_id", "run_id", "machine_id", "machine", "scenario", "revision", "kind", "state", "percent",
        "code", "reason", "cleared", "queued_at", "started_at", "ended_at")  # fmt: skip


@dataclass(frozen=True)
class ExecutionFilter:
    """Which executions to list: each given criterion narrows the history."""

    machine: str | None = None  # a name or a machine id
    scenario: str | None = None  # a name or a scenario id
    run_id: uuid.UUID | None = None
    state: str | None = None
    limit: int = 200

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if self.machine:
            clauses.append("(m.name = %s OR m.machine_id::text = %s)")
            params += [self.machine, self.machine]
        if self.scenario:
            clauses.append("(x.scenario = %s OR x.scenario_id::text = %s)")
            params += [self.scenario, self.scenario]
        if self.run_id:
            clauses.append("x.run_id = %s")
            params.append(self.run_id)
        if self.state:
            clauses.append("x.state = %s")
            params.append(self.state)
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


async def list_executions(conn: Conn, f: ExecutionFilter) -> list[dict[str, Any]]:
    """Execution history, newest first, as JSON-ready rows with the remedy beside each error code
    (as the console and the CSV show it)."""
    where, params = f.where()
    rows = await (
        await conn.execute(
            "SELECT x.execution_id, x.run_id, x.machine_id, m.name, x.scenario, x.revision, x.kind, x.state,"
            " x.percent, x.code, x.reason, x.cleared, x.queued_at, x.started_at, x.ended_at"
            f" FROM api.executions x LEFT JOIN api.machines m ON m.machine_id = x.machine_id {where}"
            " ORDER BY x.queued_at DESC, x.execution_id LIMIT %s",
            (*params, f.limit),
        )
    ).fetchall()
    out = [{k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in zip(KEYS, r, strict=True)}
           for r in rows]  # fmt: skip
    for row in out:
        known = CATALOGUE.get(row["code"] or "")
        row["remedy"] = known.remedy if known else None
    return out
