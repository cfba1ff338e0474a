"""Scenarios, runs, executions and error clear over HTTP."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from dpm_api import live, scenarios
from dpm_api.adapters import executions
from dpm_api.adapters.executions import ExecutionFilter
from dpm_api.deps import ActorDep, RuntimeDep, ViewerDep
from dpm_api.domain.csvfile import spreadsheet_safe
from dpm_api.routes.agents import machine_ref
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.events import ChunkSent
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.text import Label, Name

router = APIRouter(tags=["scenarios"])


class ScenarioIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
    spec: ScenarioSpec


class RunIn(BaseModel):
    machines: list[Annotated[Name, Field(max_length=253)]] = Field(
        default_factory=list, max_length=100_000, description="machine ids or names"
    )
    group: Name | None = Field(default=None, description="every machine of this group")
    at: datetime | None = Field(default=None, description="not before this time (UTC if no offset)")


def _scenario_out(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"scenario_id": str(row[0]), "name": row[1], "revision": row[2], "spec": row[3]}


@router.get("/scenarios")
async def list_scenarios(rt: RuntimeDep, _who: ViewerDep) -> list[dict[str, Any]]:
    async with rt.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT scenario_id, name, revision, spec FROM api.scenarios WHERE NOT deleted ORDER BY name"
            )
        ).fetchall()
    return [_scenario_out(r) for r in rows]


@router.post("/scenarios", status_code=201)
async def create_scenario(body: ScenarioIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    return await _save(rt, None, body, actor)


@router.put("/scenarios/{ref}")
async def revise_scenario(ref: str, body: ScenarioIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """A new revision; runs already requested keep theirs."""
    async with rt.pool.connection() as conn:
        scenario_id, *_ = await scenarios.find(conn, ref)
    return await _save(rt, scenario_id, body, actor)


async def _save(rt: Runtime, scenario_id: uuid.UUID | None, body: ScenarioIn, actor: str) -> dict[str, Any]:
    async with rt.pool.connection() as conn, conn.transaction():
        saved, position = await scenarios.save(rt.eventlog, conn, scenario_id, body.name, body.spec, actor=actor)
    await rt.projections["scenarios"].wait_for(position, timeout=5)
    return {
        "scenario_id": str(saved.scenario_id),
        "name": saved.name,
        "revision": saved.revision,
        "spec": saved.spec.model_dump(mode="json"),
    }


@router.delete("/scenarios/{ref}", status_code=202)
async def delete_scenario(ref: str, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    async with rt.pool.connection() as conn, conn.transaction():
        result = await scenarios.delete(rt.eventlog, conn, ref, actor=actor)
    await rt.projections["scenarios"].wait_for(result.position, timeout=5)
    return {"deleted": ref}


@router.post("/scenarios/{ref}/runs", status_code=202)
async def run_scenario(ref: str, body: RunIn, rt: RuntimeDep, actor: ActorDep, dry_run: bool = False) -> dict[str, Any]:
    """Run now (or not before ``at``) on machines and/or a group; each machine gets an execution.
    ``dry_run``: the preview only -- machines, steps, conflicts and waits -- and nothing is appended."""
    async with rt.pool.connection() as conn, conn.transaction():
        machine_ids = await resolve_machines(conn, body)
        if dry_run:
            return await scenarios.preview(conn, ref, machine_ids)
        request = await scenarios.run(rt.eventlog, conn, ref, machine_ids, body.at, actor=actor)
    return {"run_id": str(request.run_id), "scenario": request.name, "revision": request.revision,
            "machines": [str(m) for m in request.machine_ids]}  # fmt: skip


async def resolve_machines(conn: Any, body: RunIn) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    for ref in body.machines:
        ids.append(await machine_ref(conn, ref))  # a name several machines share (older logs) is refused
    if body.group:
        rows = await (
            await conn.execute("SELECT machine_id FROM api.machines WHERE group_name = %s ORDER BY name", (body.group,))
        ).fetchall()
        if not rows:
            raise E.GROUP_NOT_FOUND(name=body.group)
        ids += [r[0] for r in rows]
    if not ids:
        raise E.INVALID_REQUEST(reason="name at least one machine or a group")
    return ids


@router.post("/scenarios/{ref}/start-now", status_code=202)
async def start_now(ref: str, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """Start the gathering multicast session of a restore with the machines that are ready."""
    async with rt.pool.connection() as conn, conn.transaction():
        await scenarios.start_now(rt.eventlog, conn, ref, actor=actor)
    return {"start_now": ref}


@router.get("/executions")
async def list_executions(
    rt: RuntimeDep,
    _who: ViewerDep,
    machine: str | None = None,
    scenario: str | None = None,
    run_id: uuid.UUID | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> list[dict[str, Any]]:
    """Execution history (newest first): per machine, per scenario, per run, by state."""
    return await _history(rt, ExecutionFilter(machine, scenario, run_id, state, limit))


async def _history(rt: Runtime, f: ExecutionFilter) -> list[dict[str, Any]]:
    async with rt.pool.connection() as conn:
        return await executions.list_executions(conn, f)


@router.get("/executions/export", response_class=PlainTextResponse)
async def export_executions(
    rt: RuntimeDep,
    _who: ViewerDep,
    machine: str | None = None,
    scenario: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> PlainTextResponse:
    """The same history as CSV (start, end, result, error code and remedy per machine)."""
    rows = await _history(rt, ExecutionFilter(machine=machine, scenario=scenario, state=state, limit=limit))
    out = io.StringIO()
    columns = ["machine", "scenario", "revision", "kind", "state", "code", "reason", "remedy", "queued_at",
               "started_at", "ended_at", "execution_id", "run_id"]  # fmt: skip
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    return PlainTextResponse(out.getvalue(), media_type="text/csv")


STREAM_SECONDS = 3600  # at most an hour per connection


@router.get("/executions/stream")
async def stream_executions(
    request: Request,
    rt: RuntimeDep,
    _who: ViewerDep,
    run_id: uuid.UUID | None = None,
    machine: str | None = None,
    poll: Annotated[float, Query(ge=0.1, le=10)] = 0.5,
) -> StreamingResponse:
    """Live progress as server-sent events: one ``execution`` event per change of an execution (state,
    percent, code), pushed by the api's one live feed (``dpm_api.live``) after a snapshot, and
    ``transfer`` events (bytes, rate, ETA) from the imager's ChunkSent signals for the executions shown;
    with ``run_id`` it ends once every execution of the run is final. At most an hour per connection.
    ``poll`` no longer drives any query (kept for old clients): it is how often the stream checks
    that its client is still there and the api not closing."""
    watch = live.Watch(str(run_id) if run_id else None, machine)
    shown = ExecutionFilter(machine=machine, run_id=run_id, limit=10_000)
    events = changes(request, rt, watch, shown, poll)
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-store"})


async def changes(
    request: Request, rt: Runtime, watch: live.Watch, shown: ExecutionFilter, poll: float
) -> AsyncIterator[str]:
    """The stream of ``stream_executions``: a snapshot, then what the feed pushes (again a snapshot
    when this stream fell so far behind that its queue overflowed). A stream waits on its own queue
    (no task per wait) and checks its client only after ``poll`` seconds with nothing to send:
    Starlette already ends a streaming response whose client went away, and the feed wakes every
    stream when the api starts closing, so hundreds of open pages cost nothing between events."""
    feed: live.LiveFeed = request.app.state.live
    sub, view = feed.subscribe(watch), live.View(watch)
    sub.resync = True
    deadline = time.monotonic() + STREAM_SECONDS
    try:
        # a stopping api ends its streams (the client reconnects) instead of holding its drain
        while time.monotonic() < deadline and not rt.closing.is_set():
            items: list[live.Change | ChunkSent] = []
            if sub.resync:
                sub.resync = False
                async with rt.pool.connection() as conn:
                    rows = await live.snapshot(conn, shown)
                sub.shown.update(c.row["execution_id"] for c in rows)
                items += rows
            if not items:
                if (item := await sub.next(poll)) is None:
                    if await request.is_disconnected():
                        return
                    continue
                items.append(item)
            for item in [*items, *sub.take()]:
                if (text := view.render(item)) is not None:
                    yield text
            if view.ended():
                yield "event: end\ndata: {}\n\n"
                return
    finally:
        feed.unsubscribe(sub)


@router.post("/executions/{execution_id}/suspend", status_code=202)
async def suspend(execution_id: uuid.UUID, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """Interrupt: a running step gets the suspend timeout to confirm; `POST /clear` releases the machine."""
    async with rt.pool.connection() as conn, conn.transaction():
        await scenarios.suspend(rt.eventlog, conn, execution_id, actor=actor)
    return {"suspending": str(execution_id)}


class ClearIn(BaseModel):
    machines: list[Annotated[Name, Field(max_length=253)]] = Field(
        default_factory=list, max_length=100_000, description="machine ids or names"
    )
    state: Label | None = Field(default=None, description="bulk clear: every machine whose latest execution is in it")


@router.post("/clear")
async def clear(body: ClearIn, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """Error clear (named machines) or bulk status clear (every machine in ``state``)."""
    async with rt.pool.connection() as conn, conn.transaction():
        ids = await resolve_machines(conn, RunIn(machines=body.machines)) if body.machines else []
        if body.state:
            rows = await (
                await conn.execute(
                    "SELECT DISTINCT machine_id FROM api.executions WHERE state = %s AND NOT cleared", (body.state,)
                )
            ).fetchall()
            ids += [r[0] for r in rows]
        power = await (
            await conn.execute(
                "SELECT machine_id FROM api.machines WHERE power_error IS NOT NULL AND %s",
                (body.state == "power-on-error",),
            )
        ).fetchall()
        ids += [r[0] for r in power]
        position = await scenarios.clear(rt.eventlog, conn, list(dict.fromkeys(ids)), actor=actor)
    if position:
        await rt.projections["executions"].wait_for(position, timeout=5)
        await rt.projections["machines"].wait_for(position, timeout=5)
    return {"cleared": len(set(ids))}
