"""The executions page's actions, each through its REST route's own function and role: error clear
of the selected executions' machines (``POST /clear``), bulk clear of every machine in a state (the
same route's ``state``), and suspend (``POST /executions/{id}/suspend``) of one or the selected
executions. After the post the browser goes back to the page it came from (only an executions page)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import pages
from dpm_api.deps import get_runtime
from dpm_api.routes import scenarios as scenario_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
PAGE = "/console/executions"
NOTICES = {  # one: the singular's text, else the plural's (never "machine(s)")
    "cleared": ("Error cleared on {count} machine: it may take a scenario again.",
                "Error cleared on {count} machines: they may take a scenario again."),
    "suspended": ("Suspend requested for {count} execution.", "Suspend requested for {count} executions."),
}  # fmt: skip
CLEARABLE = ("failed", "suspended")  # the states a bulk clear is offered for


def notice(done: str, count: str | None) -> str | None:
    """The line an executions page shows after an action (``count`` is only ever a number here)."""
    if done not in NOTICES:
        return None
    n = int(count) if count and count.isdigit() else 0
    one, many = NOTICES[done]
    return (one if n == 1 else many).format(count=n)


def back_to(value: str | None) -> str:
    """Where to return after an action: the executions page (with its filters) it was posted from,
    never another address (an open redirect)."""
    if value:
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc and parts.path == PAGE:
            return value
    return PAGE


def done_url(back: str, done: str, count: int) -> str:
    parts = urlsplit(back)
    kept = "&".join(p for p in parts.query.split("&") if p and not p.startswith(("done=", "count=")))
    tail = urlencode({"done": done, "count": count})
    return f"{parts.path}?{kept + '&' if kept else ''}{tail}"


def selected(fields: dict[str, list[str]]) -> list[uuid.UUID]:
    """The selected executions' ids (1 to MAX_SELECTED, each a UUID), or DPM-E100."""
    chosen = fields.get("execution", [])
    if not chosen or len(chosen) > pages.MAX_SELECTED:
        raise E.INVALID_REQUEST(reason=f"select between 1 and {pages.MAX_SELECTED} executions")
    try:
        return list(dict.fromkeys(uuid.UUID(value) for value in chosen))
    except ValueError:
        raise E.INVALID_REQUEST(reason="a selected execution id is not a UUID") from None


async def machines_of(rt: Runtime, ids: list[uuid.UUID]) -> list[str]:
    async with rt.pool.connection() as conn:
        cur = await conn.execute("SELECT DISTINCT machine_id FROM api.executions WHERE execution_id = ANY(%s)", (ids,))
        return [str(r[0]) for r in await cur.fetchall()]


@router.post("/console/executions/act")
async def act(request: Request) -> Response:
    """Clear or suspend the selected executions (a row's own Suspend button selects only its row)."""
    rt = get_runtime(request)
    who = None
    try:
        who, fields = await pages.posted(request, rt, Role.OPERATOR, "POST /clear")
        actor, action, back = who.principal.username, pages.one(fields, "action"), pages.one(fields, "back")
        for single in ("suspend", "clear"):  # a row's own button: that row only
            if (one := pages.one(fields, single)) is not None:
                action, fields = single, {"execution": [one]}
        ids = selected(fields)
        if action == "clear":
            body = scenario_routes.ClearIn(machines=await machines_of(rt, ids))
            count = (await scenario_routes.clear(body, rt, actor))["cleared"]
        elif action == "suspend":
            for eid in ids:
                await scenario_routes.suspend(eid, rt, actor)
            count = len(ids)
        else:
            raise E.INVALID_REQUEST(reason=f"no action {action!r} on executions")
    except DpmError as err:
        return pages.refusal(err, who)
    done = "cleared" if action == "clear" else "suspended"
    return pages.redirect(done_url(back_to(back), done, count))


@router.post("/console/executions/clear-state")
async def clear_state(request: Request) -> Response:
    """Bulk clear: every machine whose latest execution is in the chosen state (failed, suspended)."""
    rt = get_runtime(request)
    who = None
    try:
        who, fields = await pages.posted(request, rt, Role.OPERATOR, "POST /clear")
        state = pages.one(fields, "state") or ""
        if state not in CLEARABLE:
            raise E.INVALID_REQUEST(reason=f"bulk clear takes a state of {', '.join(CLEARABLE)}")
        body = scenario_routes.ClearIn(state=state)
        count = (await scenario_routes.clear(body, rt, who.principal.username))["cleared"]
    except DpmError as err:
        return pages.refusal(err, who)
    return pages.redirect(done_url(back_to(pages.one(fields, "back")), "cleared", count))
