"""The dashboard: executions running, failed and waiting, machines online, the last hour's transfer
throughput, and what needs someone (failed runs nobody cleared, interrupts not confirmed, outdated
agents), each linking to the page that resolves it.

Its figures are one fragment (``/console/dashboard/live``) that the page includes and console.js
fetches again whenever the dashboard's own stream (``/console/dashboard/stream``, ``dash_stream``)
says they changed (``data-refresh-on``): pushed, never polled by the page, and one request per change
per open dashboard, however many parts it shows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from dpm_api.console import dash_chart, dash_data, dash_stream, pages
from dpm_api.deps import get_runtime, now
from dpm_api.routes.scenarios import STREAM_SECONDS
from dpm_schemas import E
from dpm_schemas.version import DPM_VERSION

router = APIRouter(include_in_schema=False)
LIVE = "/console/dashboard/live"
STREAM = "/console/dashboard/stream"


async def _figures(request: Request) -> dash_data.Figures:
    async with get_runtime(request).pool.connection() as conn:
        return await dash_data.load(conn, DPM_VERSION)


async def _context(request: Request, *, shared: bool = False) -> dict[str, Any]:
    """The templates' context; ``shared``: figures from the process's fragment cache when their key
    is unchanged (``dash_stream.Shared``), for the fragment every open dashboard fetches at once."""
    state = request.app.state
    if shared:
        key = dash_stream.shared_key(state.live, dash_stream.pulse_of(state), now(request))
        figures = await dash_stream.shared_of(state).get(key, lambda: _figures(request))
    else:
        figures = await _figures(request)
    rows = dash_chart.buckets(now(request), figures.captures)
    # the newest CAPTURES backups all fell inside the hour: older ones of the hour were not read
    cut = len(figures.captures) >= dash_data.CAPTURES and figures.captures[-1][0] >= rows[0].start
    return {
        "f": figures,
        "buckets": rows,
        "chart": dash_chart.chart(rows),
        "cut": cut,
        "captures_cap": dash_data.CAPTURES,
        "human": dash_chart.human,
        "figure": dash_data.figure,
        "live_url": LIVE,
        "stream_url": STREAM,
    }


@router.get("/console/dashboard")
async def dashboard_page(request: Request) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    return pages.render("dashboard.html", visitor=who, title="Dashboard", **await _context(request))


@router.get(LIVE)
async def dashboard_live(request: Request) -> Response:
    """The dashboard's figures alone, for console.js to swap in. Without a session it answers 401 (a
    redirect would be followed by fetch, and the login page swapped into the dashboard)."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.refusal(E.UNAUTHENTICATED())
    response = pages.render("dashboard_live.html", visitor=who, **await _context(request, shared=True))
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(STREAM)
async def dashboard_stream(request: Request) -> Response:
    """Server-sent ``execution`` events, empty, each meaning "the figures changed" (``dash_stream``);
    at most an hour per connection (EventSource reconnects). Without a session: 401."""
    rt = get_runtime(request)
    if await pages.visitor(request, rt) is None:
        return pages.refusal(E.UNAUTHENTICATED())
    beats = dash_stream.beats(
        rt, request.app.state.live, dash_stream.pulse_of(request.app.state), lambda: now(request),
        request.is_disconnected, STREAM_SECONDS,
    )  # fmt: skip
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    return StreamingResponse(beats, media_type="text/event-stream", headers=headers)
