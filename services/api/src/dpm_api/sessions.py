"""Multicast sessions, the api's read model (``api.multicast_sessions``) and its queries.

The log says when a session starts (MulticastSessionStarted: its scenario, group, reason, members
and their executions) but no event says it ended: a session is over when every member's execution
is (completed, failed or suspended). So the projection keeps what the start said, and the end, the
outcome and the members' states are read at query time from the executions read model
(``api.executions``); the rule that sums them up is pure (``summary``) and unit-tested.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import MulticastSessionStarted

RECENT = 100  # the most the list answers: the newest sessions first
DONE = ("completed", "failed", "suspended")
RECENT_SQL = (
    "SELECT s.session_id, s.scenario_id, c.name, s.group_name, s.reason, s.started_at, s.machine_ids,"
    " s.execution_ids FROM api.multicast_sessions s LEFT JOIN api.scenarios c ON c.scenario_id = s.scenario_id"
    " ORDER BY s.position DESC LIMIT %s"
)
MEMBERS_SQL = (
    "SELECT x.execution_id, x.machine_id, m.name, x.state, x.code, x.ended_at FROM api.executions x"
    " LEFT JOIN api.machines m ON m.machine_id = x.machine_id WHERE x.execution_id = ANY(%s)"
)


class MulticastSessions:
    """One row per session as it started; nothing else about a session is in the log."""

    name = "multicast_sessions"
    schema = "api"
    tables = ("multicast_sessions",)
    event_types = (MulticastSessionStarted.wire_name,)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".multicast_sessions (session_id uuid PRIMARY KEY,'
            " scenario_id uuid NOT NULL, group_name text NOT NULL, reason text NOT NULL,"
            " machine_ids uuid[] NOT NULL, execution_ids uuid[] NOT NULL, started_at timestamptz NOT NULL,"
            " position bigint NOT NULL);"
            f'CREATE INDEX IF NOT EXISTS multicast_sessions_recent ON "{schema}".multicast_sessions (position DESC);'
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            assert isinstance(e, MulticastSessionStarted)
            await conn.execute(
                f'INSERT INTO "{schema}".multicast_sessions (session_id, scenario_id, group_name, reason,'
                " machine_ids, execution_ids, started_at, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (session_id) DO NOTHING",
                (e.session_id, e.scenario_id, e.group, e.reason, list(e.machine_ids), list(e.execution_ids),
                 rec.occurred_at, rec.position),
            )  # fmt: skip


def summary(states: Sequence[str]) -> str:
    """The outcome of a session from its members' execution states: ``running`` while any is not
    done, else ``completed``/``failed``/``suspended`` when all agree, else ``mixed``."""
    if not states or any(s not in DONE for s in states):
        return "running"
    kinds = set(states)
    return kinds.pop() if len(kinds) == 1 else "mixed"


def session_view(row: Sequence[Any], members: Mapping[uuid.UUID, Sequence[Any]]) -> dict[str, Any]:
    """A row of RECENT_SQL with its members (rows of MEMBERS_SQL by execution id) as the API answers;
    a member whose execution the read model no longer has is ``unknown`` (never done)."""
    sid, scenario_id, scenario, group, reason, started_at, machine_ids, execution_ids = row
    out: list[dict[str, Any]] = []
    for eid, mid in zip(execution_ids, machine_ids, strict=False):
        m = members.get(eid)
        out.append({"execution_id": str(eid), "machine_id": str(mid), "machine": (m[2] if m else None) or str(mid),
                    "state": m[3] if m else "unknown", "code": m[4] if m else None})  # fmt: skip
    outcome = summary([str(m["state"]) for m in out])
    ends = [members[e][5] for e in execution_ids if e in members and members[e][5] is not None]
    return {
        "session_id": str(sid),
        "scenario_id": str(scenario_id),
        "scenario": scenario or str(scenario_id),
        "group": group,
        "reason": reason,
        "started_at": started_at.isoformat(),
        "ended_at": max(ends).isoformat() if ends and outcome != "running" else None,
        "outcome": outcome,
        "counts": dict(Counter(m["state"] for m in out)),
        "members": out,
    }


async def recent(conn: Conn, limit: int = RECENT) -> list[dict[str, Any]]:
    """The newest ``limit`` sessions (at most RECENT), running and finished, newest first."""
    rows = await (await conn.execute(RECENT_SQL, (min(limit, RECENT),))).fetchall()
    ids = [eid for r in rows for eid in r[7]]
    found = await (await conn.execute(MEMBERS_SQL, (ids,))).fetchall() if ids else []
    members = {m[0]: m for m in found}
    return [session_view(r, members) for r in rows]
