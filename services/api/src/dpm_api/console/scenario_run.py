"""Running a scenario from its page: the dry-run preview (``POST /scenarios/{ref}/runs?dry_run=true``,
the run route's own function with ``dry_run``: per machine how it would start, what it would wait
for, the restore checks before waking, and the conflicts that would refuse the run) and "Run now"
(the same function), which lands on the run's live executions page."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from dpm_api import scenarios as scenario_store
from dpm_api.console import pages, scenario_form
from dpm_api.deps import get_runtime
from dpm_api.routes import scenarios as scenario_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E, text
from dpm_schemas.errors import DpmError
from dpm_schemas.events.scenarios import UNAVAILABLE_KINDS
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
SEPARATORS = re.compile(r"[\s,]+")


async def context(rt: Runtime, ref: str) -> dict[str, Any]:
    """What a scenario's page shows: the scenario and the groups a run may target (an unknown scenario is refused)."""
    async with rt.pool.connection() as conn:
        scenario_id, name, revision, spec = await scenario_store.find(conn, ref)
        groups = [r[0] for r in await (await conn.execute("SELECT name FROM api.groups ORDER BY name LIMIT 1000"))
                  .fetchall()]  # fmt: skip
    return {
        "title": name,
        "scenario_id": str(scenario_id),
        "scenario_name": name,
        "revision": revision,
        "spec": spec.model_dump(mode="json"),
        "params": scenario_form.KIND_PARAMS[spec.kind],
        "groups": groups,
        "schedule_url": "/console/schedules/new?" + urlencode({"scenario": name}),
        "history_url": "/console/executions?" + urlencode({"scenario": name}),
    }


def typed_of(fields: dict[str, list[str]]) -> dict[str, str]:
    """The targets as typed: a group's name and/or machine names or ids."""
    return {"group": pages.one(fields, "group") or "", "machines": pages.one(fields, "machines") or ""}


def run_body(typed: dict[str, str]) -> scenario_routes.RunIn:
    """The run route's body (machines split at commas and white space; the group, if one was chosen).
    Raises pydantic's ValidationError, as the route's body would."""
    machines = [m for m in SEPARATORS.split(typed["machines"]) if m]
    return scenario_routes.RunIn(machines=machines, group=typed["group"] or None)


async def _preview(rt: Runtime, who: pages.Visitor, ref: str, body: scenario_routes.RunIn) -> dict[str, Any]:
    """The REST dry run itself (nothing is appended), so the preview is the API's to the letter."""
    return await scenario_routes.run_scenario(ref, body, rt, who.principal.username, dry_run=True)


async def _shown(rt: Runtime, who: pages.Visitor, ref: str, typed: dict[str, str], shown: dict[str, Any] | None,
                 error: DpmError | None) -> Response:  # fmt: skip
    """The scenario's page with the targets as typed, the preview and/or the refusal of the run."""
    status = error.error.http_status if error else 200
    return pages.render(
        "scenario.html", status=status, visitor=who, notice=None, can_act=who.can_act, targets=typed,
        preview=shown, error=error.to_dict() if error else None,
        unavailable={k.value for k in UNAVAILABLE_KINDS}, **await context(rt, ref),
    )  # fmt: skip


def _refusal(exc: ValidationError) -> DpmError:
    return text.refusal([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)])


async def _posted(request: Request) -> tuple[Runtime, pages.Visitor, dict[str, str]] | Response:
    """A run form's runtime, visitor and typed fields, checked with the run route's role (the preview
    is that route with ``dry_run``); or the refusal page."""
    rt = get_runtime(request)
    try:
        who, fields = await pages.posted(request, rt, Role.OPERATOR, "POST /scenarios/{ref}/runs")
    except DpmError as err:
        return pages.refusal(err)
    return rt, who, typed_of(fields)


@router.post("/console/scenarios/{ref}/preview")
async def dry_run(request: Request, ref: str) -> Response:
    """The preview, with the REST dry run's role (an operator's: it is the run route with ``dry_run``)."""
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    rt, who, typed = got
    try:
        return await _shown(rt, who, ref, typed, await _preview(rt, who, ref, run_body(typed)), None)
    except ValidationError as exc:
        return await _shown(rt, who, ref, typed, None, _refusal(exc))
    except DpmError as err:
        if err.code == E.SCENARIO_NOT_FOUND.code:
            return pages.refusal(err, who)
        return await _shown(rt, who, ref, typed, None, err)


@router.post("/console/scenarios/{ref}/run")
async def run(request: Request, ref: str) -> Response:
    """Run now; a refusal shows on the scenario's page, beside the preview of why."""
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    rt, who, typed = got
    try:
        body = run_body(typed)
    except ValidationError as exc:
        return await _shown(rt, who, ref, typed, None, _refusal(exc))
    try:
        started = await scenario_routes.run_scenario(ref, body, rt, who.principal.username)
    except DpmError as err:
        if err.code == E.SCENARIO_NOT_FOUND.code:
            return pages.refusal(err, who)
        try:
            shown = await _preview(rt, who, ref, body)
        except DpmError:
            shown = None
        return await _shown(rt, who, ref, typed, shown, err)
    return pages.redirect("/console/executions?" + urlencode({"run_id": started["run_id"]}))
