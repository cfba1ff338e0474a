"""The multicast sessions page: per multicast scenario, the machines gathering for its session
(waiting for the max targets or the max wait) and those in a session now, each member with its
state, and "Start now" (the REST route's own function, ``POST /scenarios/{ref}/start-now``) for a
gathering restore. Read from the executions and scenarios read models: a session is its members.
The list is a fragment (``/console/sessions/live``) console.js fetches again whenever the execution
stream pushes a change, so the members' states change on the page without a reload. Below them, the
recent sessions (running and finished, newest first, the last ``sessions.RECENT``) from the api's
multicast sessions read model, each with its outcome from its members' executions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api import sessions as session_model
from dpm_api.console import pages
from dpm_api.console.res_text import stamp
from dpm_api.deps import get_runtime
from dpm_api.routes import scenarios as scenario_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
PAGE = "/console/sessions"
MAX_MEMBERS = 5000
MEMBERS = (
    "SELECT s.scenario_id, s.name, s.kind, s.multicast_group, s.spec->'multicast', x.execution_id, x.machine_id,"
    " m.name, x.state, x.percent FROM api.scenarios s JOIN api.executions x ON x.scenario_id = s.scenario_id"
    " LEFT JOIN api.machines m ON m.machine_id = x.machine_id WHERE s.multicast_group IS NOT NULL AND NOT s.deleted"
    " AND x.state NOT IN ('completed', 'failed', 'suspended') ORDER BY s.name, m.name LIMIT %s"
)
NO_START_NOW = {"remote-update"}  # the API refuses "start now" for them (DPM-E147)


@dataclass
class Session:
    """One multicast scenario's open executions: who gathers, who is in a session."""

    scenario_id: str
    scenario: str
    kind: str
    group: str
    conditions: dict[str, Any]
    members: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gathering(self) -> int:
        return sum(m["state"] == "waiting" for m in self.members)

    @property
    def can_start_now(self) -> bool:
        return self.gathering > 0 and self.kind not in NO_START_NOW


def sessions_of(rows: list[tuple[Any, ...]]) -> list[Session]:
    """The rows of MEMBERS grouped per scenario, in their order."""
    out: dict[str, Session] = {}
    for sid, name, kind, group, conditions, eid, mid, machine, state, percent in rows:
        key = str(sid)
        if key not in out:
            out[key] = Session(key, name, kind, group, dict(conditions or {}))
        out[key].members.append({"execution_id": str(eid), "machine_id": str(mid), "machine": machine or str(mid),
                                 "state": state, "percent": percent})  # fmt: skip
    return list(out.values())


async def _sessions(rt: Runtime) -> dict[str, Any]:
    """The page's data: the gathering/running sessions per scenario, and the recent sessions."""
    async with rt.pool.connection() as conn:
        open_ = sessions_of(await (await conn.execute(MEMBERS, (MAX_MEMBERS,))).fetchall())
        recent = await session_model.recent(conn)
    for r in recent:  # as the other pages show times
        r["started"], r["ended"] = stamp(r["started_at"]), stamp(r["ended_at"]) if r["ended_at"] else ""
    return {"sessions": open_, "recent": recent}


@router.get("/console/sessions")
async def sessions_page(request: Request, done: str = "") -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    return pages.render(
        "sessions.html",
        visitor=who,
        title="Multicast sessions",
        **await _sessions(rt),
        can_act=who.can_act,
        notice="Start now requested." if done == "started" else None,
    )


@router.get("/console/sessions/live")
async def sessions_fragment(request: Request) -> Response:
    """The sessions alone, fetched again by console.js on each pushed change: 401 without a session
    (console.js swaps in only a successful answer, never the login page)."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.refusal(E.UNAUTHENTICATED())
    return pages.render("sessions_live.html", visitor=who, **await _sessions(rt), can_act=who.can_act)


@router.post("/console/sessions/{ref}/start-now")
async def start_now(request: Request, ref: str) -> Response:
    rt = get_runtime(request)
    who = None
    try:
        who, _fields = await pages.posted(request, rt, Role.OPERATOR, "POST /scenarios/{ref}/start-now")
        await scenario_routes.start_now(ref, rt, who.principal.username)
    except DpmError as err:
        return pages.refusal(err, who)
    return pages.redirect(f"{PAGE}?done=started")
