"""The scenario pages: the list, a scenario's page, the one form that creates and edits every kind
(refusals shown beside their fields with the API's own codes), and deletion after a confirmation
page. Saving and deleting call the REST routes' own functions, so the console refuses what the API
refuses, with the same codes; running and the dry-run are in ``scenario_run``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from dpm_api import scenarios as scenario_store
from dpm_api.console import pages, scenario_form, scenario_run
from dpm_api.console.pages import Visitor
from dpm_api.deps import get_runtime
from dpm_api.routes import scenarios as scenario_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E, text
from dpm_schemas.errors import DpmError
from dpm_schemas.events.scenarios import UNAVAILABLE_KINDS
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
router.include_router(scenario_run.router)
LIST = "/console/scenarios"
NOTICES = {"deleted": "Scenario deleted.", "saved": "Scenario saved."}
UNAVAILABLE = {k.value for k in UNAVAILABLE_KINDS}
# The latest run of each scenario: how many machines it named, and how many are still in it.
LAST_RUNS = (
    "SELECT s.scenario_id, r.run_id, r.machines, r.open FROM api.scenarios s JOIN LATERAL ("
    " SELECT x.run_id, count(*) AS machines,"
    " count(*) FILTER (WHERE x.state NOT IN ('completed', 'failed', 'suspended')) AS open"
    " FROM api.executions x WHERE x.scenario_id = s.scenario_id GROUP BY x.run_id"
    " ORDER BY max(x.queued_at) DESC LIMIT 1) r ON true WHERE NOT s.deleted"
)


@router.get("/console/scenarios")
async def scenarios_page(request: Request, done: str = "") -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    rows = await scenario_routes.list_scenarios(rt, who.principal)
    async with rt.pool.connection() as conn:
        last = {str(r[0]): {"run_id": str(r[1]), "machines": r[2], "open": r[3]}
                for r in await (await conn.execute(LAST_RUNS)).fetchall()}  # fmt: skip
    return pages.render(
        "scenarios.html",
        visitor=who,
        title="Scenarios",
        rows=rows,
        last=last,
        unavailable=UNAVAILABLE,
        can_act=who.can_act,
        notice=NOTICES.get(done),
    )


def _form(who: Visitor, *, ref: str | None, values: dict[str, str], errors: dict[str, DpmError] | None = None,
          status: int = 200) -> Response:  # fmt: skip
    """The create (``ref`` None) or edit form, with what was typed and each refusal beside its field."""
    errors = errors or {}
    summary = E.CONSOLE_SCENARIO_NOT_SAVED(count=len(errors)).to_dict() if errors else None
    title = "New scenario" if ref is None else f"Edit {values.get('name', '')}"
    return pages.render(
        "scenario_form.html",
        status=status,
        visitor=who,
        title=title,
        ref=ref,
        values=values,
        errors={field: err.to_dict() for field, err in errors.items()},
        summary=summary,
        kinds=scenario_form.KINDS,
        action=f"{LIST}/new" if ref is None else f"{LIST}/{ref}/edit",
    )


@router.get("/console/scenarios/new")
async def new_page(request: Request) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        who.principal.require(Role.OPERATOR, "POST /scenarios")
    except DpmError as err:
        return pages.refusal(err, who)
    return _form(who, ref=None, values={"kind": "disk-check", "timeout_seconds": "3600"})


Saved = tuple[str | None, dict[str, DpmError]]


async def _attempt(rt: Runtime, who: Visitor, ref: str | None, body: dict[str, Any]) -> Saved:
    """Save through the REST route's function: the scenario's id, or the refusals per field."""
    try:
        payload = scenario_routes.ScenarioIn.model_validate(body)
    except ValidationError as exc:
        return None, scenario_form.pydantic_problems(exc, body)
    actor = who.principal.username
    try:
        if ref is None:
            saved = await scenario_routes.create_scenario(payload, rt, actor)
        else:
            saved = await scenario_routes.revise_scenario(ref, payload, rt, actor)
    except ValidationError as exc:  # an event field refused it: the API's 422 too
        return None, {scenario_form.FORM: text.refusal(exc.errors(include_input=False), exc.title)}
    except DpmError as err:
        field = scenario_form.field_of_error(err, str(body["spec"].get("kind", "")))
        return None, {scenario_form.known_field(field): err}
    return str(saved["scenario_id"]), {}


async def _save(request: Request, ref: str | None) -> Response:
    rt = get_runtime(request)
    who = None
    try:
        route = "POST /scenarios" if ref is None else "PUT /scenarios/{ref}"
        who, fields = await pages.posted(request, rt, Role.OPERATOR, route)
    except DpmError as err:
        return pages.refusal(err, who)
    scenario_id, problems = await _attempt(rt, who, ref, scenario_form.body_of(fields))
    if scenario_id is None:
        values = scenario_form.posted_values(fields)
        return _form(who, ref=ref, values=values, errors=problems, status=422)
    return pages.redirect(f"{LIST}/{scenario_id}?done=saved")


@router.post("/console/scenarios/new")
async def create(request: Request) -> Response:
    return await _save(request, None)


@router.get("/console/scenarios/{ref}")
async def scenario_page(request: Request, ref: str, done: str = "") -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        context = await scenario_run.context(rt, ref)
    except DpmError as err:
        return pages.refusal(err, who)
    return pages.render(
        "scenario.html", visitor=who, notice=NOTICES.get(done), can_act=who.can_act, unavailable=UNAVAILABLE,
        targets={"group": "", "machines": ""}, preview=None, error=None, **context,
    )  # fmt: skip


@router.get("/console/scenarios/{ref}/edit")
async def edit_page(request: Request, ref: str) -> Response:
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        who.principal.require(Role.OPERATOR, "PUT /scenarios/{ref}")
        async with rt.pool.connection() as conn:
            scenario_id, name, _revision, spec = await scenario_store.find(conn, ref)
    except DpmError as err:
        return pages.refusal(err, who)
    return _form(who, ref=str(scenario_id), values=scenario_form.values_of(name, spec))


@router.post("/console/scenarios/{ref}/edit")
async def revise(request: Request, ref: str) -> Response:
    return await _save(request, ref)


@router.get("/console/scenarios/{ref}/delete")
async def delete_page(request: Request, ref: str) -> Response:
    """The confirmation: deleting takes a second, deliberate post from this page."""
    rt = get_runtime(request)
    if (who := await pages.visitor(request, rt)) is None:
        return pages.to_login(request)
    try:
        who.principal.require(Role.OPERATOR, "DELETE /scenarios/{ref}")
        async with rt.pool.connection() as conn:
            scenario_id, name, revision, spec = await scenario_store.find(conn, ref)
    except DpmError as err:
        return pages.refusal(err, who)
    return pages.render(
        "scenario_delete.html", visitor=who, title=f"Delete {name}", scenario_id=str(scenario_id), scenario_name=name,
        revision=revision, kind=spec.kind.value,
    )  # fmt: skip


@router.post("/console/scenarios/{ref}/delete")
async def delete(request: Request, ref: str) -> Response:
    rt = get_runtime(request)
    who = None
    try:
        who, _fields = await pages.posted(request, rt, Role.OPERATOR, "DELETE /scenarios/{ref}")
        await scenario_routes.delete_scenario(ref, rt, who.principal.username)
    except DpmError as err:
        return pages.refusal(err, who)
    return pages.redirect(f"{LIST}?done=deleted")
