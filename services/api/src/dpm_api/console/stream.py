"""Live execution progress for the console's pages: the same server-sent events as
``GET /executions/stream`` (``execution``, ``transfer``, ``end``), fanned out from the api's one
live feed (``dpm_api.live``), but opened by the browser's EventSource with the session cookie (an
EventSource cannot send a bearer header). ``console.js`` applies each event to the page's rows."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from dpm_api import live
from dpm_api.adapters.executions import ExecutionFilter
from dpm_api.console import pages
from dpm_api.deps import get_runtime
from dpm_api.routes.scenarios import changes
from dpm_schemas import E

router = APIRouter(include_in_schema=False)
CHECK = 15.0  # seconds idle before a stream checks its browser is still there (the feed pushes)


@router.get("/console/executions/stream")
async def execution_stream(request: Request, run_id: str | None = None, machine: str | None = None) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.refusal(E.UNAUTHENTICATED())  # EventSource retries; the page's next load logs in
    try:
        run = uuid.UUID(run_id) if run_id else None
    except ValueError:
        return pages.refusal(E.INVALID_REQUEST(reason="run_id is not a UUID"), who)
    if machine is not None and len(machine) > 253:
        return pages.refusal(E.INVALID_REQUEST(reason="machine is longer than 253 characters"), who)
    watch = live.Watch(str(run) if run else None, machine)
    shown = ExecutionFilter(machine=machine, run_id=run, limit=10_000)
    events = changes(request, rt, watch, shown, CHECK)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)
