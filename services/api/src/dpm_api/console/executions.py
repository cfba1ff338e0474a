"""The executions page: the history (newest first) filtered by state, scenario, machine or run, kept
current by the console's execution stream (``console.js`` data-live: state, step, bytes, rate and
time left as they are pushed, no reload), each error with its code and remedy, and the CSV export of
the same history. The list, the export and the stream are the REST routes' own functions and
filters; the actions on it (clear, bulk clear, suspend) are in ``execution_actions``."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.adapters.executions import ExecutionFilter
from dpm_api.console import execution_actions, pages, session_pages
from dpm_api.deps import get_runtime
from dpm_api.routes import scenarios as scenario_routes
from dpm_schemas import E
from dpm_schemas.errors import DpmError

router = APIRouter(include_in_schema=False)
router.include_router(execution_actions.router)
router.include_router(session_pages.router)
PAGE = "/console/executions"
STREAM = "/console/executions/stream"
LIMIT = 200  # rows a page shows; the CSV export has the whole history
STATES = ("queued", "powering-on", "rebooting", "waiting", "running", "suspending", "completed", "failed", "suspended")
FINAL = ("completed", "failed", "suspended")
MAX_TEXT = 253  # a machine's name (RFC 1123) is the longest a filter may be


def filters_of(state: str, scenario: str, machine: str, run_id: str) -> dict[str, str]:
    """The filters as given (an unknown state, over-long text or a run id that is no UUID refused
    with DPM-E100, as the REST route's own query checks would)."""
    if state and state not in STATES:
        raise E.INVALID_REQUEST(reason=f"state must be one of {', '.join(STATES)}")
    if len(scenario) > MAX_TEXT or len(machine) > MAX_TEXT:
        raise E.INVALID_REQUEST(reason=f"a filter is longer than {MAX_TEXT} characters")
    if run_id:
        try:
            run_id = str(uuid.UUID(run_id))
        except ValueError:
            raise E.INVALID_REQUEST(reason="run_id is not a UUID") from None
    return {k: v for k, v in (("state", state), ("scenario", scenario), ("machine", machine), ("run_id", run_id)) if v}


def stream_url(f: dict[str, str]) -> str:
    """The live stream for these filters: a run's or a machine's when given (the stream filters by
    those), else every execution's; the page only adds new rows that match its other filters."""
    if "run_id" in f:
        return f"{STREAM}?{urlencode({'run_id': f['run_id']})}"
    if "machine" in f:
        return f"{STREAM}?{urlencode({'machine': f['machine']})}"
    return STREAM


def new_rows_match(f: dict[str, str]) -> str:
    """``data-match`` of the live table: the filters a pushed new execution must meet to be added
    (the machine and run are already the stream's; a machine id filter matches the row's id)."""
    return urlencode({k: v for k, v in f.items() if k in ("state", "scenario")})


def since(rows: list[dict[str, object]], f: dict[str, str]) -> str:
    """``data-since`` of the live table: a pushed execution the page lacks is added when it was
    queued after the oldest row shown. Empty (add every one) for a run's page, or when the page shows
    the whole filtered history: then every execution it lacks is new."""
    if "run_id" in f or len(rows) < LIMIT:
        return ""
    return str(min(str(r["queued_at"]) for r in rows))


def export_url(f: dict[str, str]) -> str:
    shown = {k: v for k, v in f.items() if k != "run_id"}  # the REST export has no run filter
    return f"{PAGE}/export" + (f"?{urlencode(shown)}" if shown else "")


@router.get("/console/executions")
async def executions_page(
    request: Request, state: str = "", scenario: str = "", machine: str = "", run_id: str = "", done: str = ""
) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        f = filters_of(state, scenario, machine, run_id)
    except DpmError as err:
        return pages.refusal(err, who)
    run = uuid.UUID(f["run_id"]) if "run_id" in f else None
    shown = ExecutionFilter(f.get("machine"), f.get("scenario"), run, f.get("state"), LIMIT)
    rows = await scenario_routes._history(rt, shown)
    return pages.render(
        "executions.html",
        visitor=who,
        title="Executions",
        rows=rows,
        f=f,
        states=STATES,
        final=FINAL,
        can_act=who.can_act,
        limit=LIMIT,
        notice=execution_actions.notice(done, request.query_params.get("count")),
        stream=stream_url(f),
        match=new_rows_match(f),
        since=since(rows, f),
        export=export_url(f),
        back_url=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
    )


@router.get("/console/executions/export")
async def export(request: Request, state: str = "", scenario: str = "", machine: str = "") -> Response:
    """The REST export's CSV (start, end, result, code and remedy per machine), as a download."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        f = filters_of(state, scenario, machine, "")
    except DpmError as err:
        return pages.refusal(err, who)
    csv = await scenario_routes.export_executions(
        rt, who.principal, machine=f.get("machine"), scenario=f.get("scenario"), state=f.get("state"), limit=100_000
    )
    name = "-".join(["executions", *(v for v in f.values())])
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]
    csv.headers["Content-Disposition"] = f'attachment; filename="{safe}.csv"'
    csv.headers["X-Content-Type-Options"] = "nosniff"
    return csv
