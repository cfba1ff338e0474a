"""The schedules pages: the list, the form that creates one (a scenario run or a power action, one
shot at a time or recurring by cron, on machines and/or a group: what ``POST /schedules`` takes;
``/console/schedules/new?scenario=<name>`` starts it filled in, for links from other pages), and
deleting one behind a confirmation page. The same form, filled in from the schedule, edits one
(``PUT /schedules/{id}``, naming the version it was read at: a change made meanwhile is refused with
DPM-E184, never overwritten), and each row pauses or resumes its schedule (``PATCH``). The form is
checked by the REST route's own model and function, and a refusal is shown inline above the form,
with the API's code, the values kept. Times are shown in each schedule's own zone with the zone's
name, and the next firing beside the cron: computed here from cron and zone as the scheduler does
(``dpm_scheduler.domain.schedules.next_fire``, croniter), not read from the scheduler's tables."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import pages, res_kit, res_text
from dpm_api.console.pages import Visitor
from dpm_api.routes import groups as group_routes
from dpm_api.routes import scenarios as scenario_routes
from dpm_api.routes import schedules as schedule_routes
from dpm_api.schedules import MAX_YEARS
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.schedules import ScheduleAction
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/schedules"
FIELDS = ("name", "action", "scenario", "when_kind", "at", "cron", "timezone", "machines", "group", "enabled")
ACTIONS = {
    ScheduleAction.RUN: "Run a scenario",
    ScheduleAction.POWER_ON: "Power on",
    ScheduleAction.POWER_OFF: "Power off",
}


async def _names(rt: Runtime, who: Visitor) -> tuple[dict[str, str], list[str]]:
    """Scenario names by id, and the group names, for the list and the form's choices."""
    scenarios = {s["scenario_id"]: s["name"] for s in await scenario_routes.list_scenarios(rt, who.principal)}
    groups = sorted(g.name for g in await group_routes.list_groups(rt, who.principal))
    return scenarios, groups


AT_FORMAT = "%Y-%m-%d %H:%M"  # how the form's "Once at" is typed and shown: 24-hour, the zone's clock
_AT = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local(at: datetime, timezone: str) -> str:
    """A time on the schedule's own clock, named: ``2026-12-24 18:30 Europe/Berlin``."""
    zone = _zone(timezone)
    return f"{(at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(zone).strftime(AT_FORMAT)} {zone.key}"


def next_run(s: dict[str, Any], now: datetime) -> str:
    """When the scheduler fires ``s`` next, by its rule (one-shot once, cron in its own zone,
    paused never), as the schedule's local time; a reason in words when it will not fire."""
    if not s.get("enabled", True):
        return "none (paused)"
    if s.get("at"):
        at = datetime.fromisoformat(s["at"])
        return (
            local(at, s.get("timezone", "UTC"))
            if (at if at.tzinfo else at.replace(tzinfo=UTC)) > now
            else "none (its time has passed)"
        )
    try:
        zone = _zone(s.get("timezone", "UTC"))
        fire: datetime = croniter(
            s.get("cron") or "", now.astimezone(zone), max_years_between_matches=MAX_YEARS
        ).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError):
        return f"never (no firing within {MAX_YEARS} years)"
    return local(fire, zone.key)


def once_at(typed: str) -> str:
    """The form's "Once at" (``YYYY-MM-DD HH:MM``, the schedule's wall clock) as the ISO text the
    body's zoning reads; DPM-E441 naming the format for anything else (a 12-hour time, a bare date)."""
    try:
        if not _AT.fullmatch(typed):
            raise ValueError(typed)
        return datetime.strptime(typed.replace("T", " "), AT_FORMAT).strftime("%Y-%m-%dT%H:%M")
    except ValueError:
        reason = f"“{typed[:40]}” is not a time written YYYY-MM-DD HH:MM (24-hour, e.g. 2026-12-24 18:30)"
        raise E.CONSOLE_FIELD_INVALID(field="Once at", reason=reason) from None


def form_body(values: dict[str, str]) -> dict[str, Any]:
    """The REST body of the form's values, the one-shot time read strictly first (only when picked)."""
    if values.get("when_kind") == "at" and values.get("at"):
        values = {**values, "at": once_at(values["at"])}
    return res_text.schedule_body(values)


def _row(s: dict[str, Any], scenarios: dict[str, str], now: datetime) -> dict[str, Any]:
    machines = len(s.get("machine_ids") or ())
    counted = f"{machines} machine" if machines == 1 else f"{machines} machines"
    targets = [t for t in (f"group {s['group']}" if s.get("group") else "", counted if machines else "") if t]
    timezone = s.get("timezone", "UTC")
    once = f"once, {local(datetime.fromisoformat(s['at']), timezone)}" if s.get("at") else ""
    return {
        "id": s["schedule_id"],
        "name": s["name"],
        "action": ACTIONS.get(ScheduleAction(s["action"]), s["action"]),
        "scenario": scenarios.get(s.get("scenario_id") or "", s.get("scenario_id") or ""),
        "when": f"cron {s['cron']}" if s.get("cron") else once,
        "next": next_run(s, now),
        "timezone": timezone,
        "targets": ", ".join(targets),
        "enabled": s.get("enabled", True),
    }


@router.get("/console/schedules")
async def schedules_page(request: Request, done: str = "", name: str = "") -> Response:
    got = await res_kit.opened(request, Role.VIEWER, "GET /schedules")
    if isinstance(got, Response):
        return got
    rt, who = got
    scenarios, _groups = await _names(rt, who)
    now = datetime.now(UTC)
    rows = [_row(s, scenarios, now) for s in await schedule_routes.list_schedules(rt, who.principal)]
    notices = {d: f"Schedule {name} {d}." for d in ("created", "deleted", "saved", "paused", "resumed")}
    return pages.render(
        "schedules.html", visitor=who, title="Schedules", rows=rows, can_act=who.can_act, notice=notices.get(done)
    )


async def _form(
    rt: Runtime, who: Visitor, values: dict[str, str], *, status: int = 200, problem: Any = None, edit: bool = False
) -> Response:
    """The new-schedule form, or with ``edit`` the edit form (posting the schedule's id and version)."""
    scenarios, groups = await _names(rt, who)
    hidden = {"schedule": values.get("schedule", ""), "version": values.get("version", "")} if edit else {}
    return pages.render(
        "schedules_new.html", status=status, visitor=who, title="Edit schedule" if edit else "New schedule",
        values=values, problem=problem, scenarios=sorted(scenarios.values()), groups=groups,
        actions={a.value: t for a, t in ACTIONS.items()}, hidden=hidden,
        form_action=f"{HOME}/edit" if edit else HOME, submit="Save schedule" if edit else "Create schedule",
    )  # fmt: skip


@router.get("/console/schedules/new")
async def new_schedule(request: Request, scenario: str = "") -> Response:
    got = await res_kit.opened(request, Role.OPERATOR, "POST /schedules")
    if isinstance(got, Response):
        return got
    rt, who = got
    values = {**dict.fromkeys(FIELDS, ""), "action": "run", "when_kind": "cron", "timezone": "UTC", "enabled": "on"}
    values["scenario"] = scenario[:200]
    return await _form(rt, who, values)


@router.post("/console/schedules")
async def create(request: Request) -> Response:
    got = await res_kit.posted(request, Role.OPERATOR, "POST /schedules")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    values = {f: res_kit.field(fields, f) for f in FIELDS}
    try:
        body = res_kit.body(schedule_routes.ScheduleIn, form_body(values))
        saved = await schedule_routes.create_schedule(body, rt, who.principal.username)
    except DpmError as err:
        return await _form(rt, who, values, status=err.error.http_status, problem=res_kit.problem(err))
    return pages.redirect(f"{HOME}?{urlencode({'done': 'created', 'name': saved['name']})}")


@router.get("/console/schedules/delete")
async def confirm_delete(request: Request, schedule: str = "", name: str = "") -> Response:
    got = await res_kit.opened(request, Role.OPERATOR, "DELETE /schedules/{schedule_id}")
    if isinstance(got, Response):
        return got
    _rt, who = got
    return res_kit.confirmation(
        who, nav="schedules", title="Delete schedule", question=f"Delete the schedule {name}? It will not fire again.",
        action="/console/schedules/delete", hidden={"schedule": schedule, "name": name}, back=HOME,
    )  # fmt: skip


@router.post("/console/schedules/delete")
async def delete(request: Request) -> Response:
    got = await res_kit.posted(request, Role.OPERATOR, "DELETE /schedules/{schedule_id}")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "name")
    try:
        res_kit.confirmed(fields, f"delete the schedule {name}")
        try:
            schedule_id = uuid.UUID(res_kit.field(fields, "schedule"))
        except ValueError:
            raise E.CONSOLE_FIELD_INVALID(field="schedule", reason="not a schedule id") from None
        await schedule_routes.delete_schedule(schedule_id, rt, who.principal.username)
    except DpmError as err:
        return pages.refusal(err, who)
    return pages.redirect(f"{HOME}?{urlencode({'done': 'deleted', 'name': name})}")


def _schedule_id(fields: res_kit.Fields) -> uuid.UUID:
    try:
        return uuid.UUID(res_kit.field(fields, "schedule"))
    except ValueError:
        raise E.CONSOLE_FIELD_INVALID(field="schedule", reason="not a schedule id") from None


async def _values(rt: Runtime, who: Visitor, s: dict[str, Any]) -> dict[str, str]:
    """A saved definition (with its version) as the form's values: names for ids, the one-shot time
    as the zone's wall clock, typed as ``YYYY-MM-DD HH:MM`` (what the form shows and reads back)."""
    scenarios, _groups = await _names(rt, who)
    async with rt.pool.connection() as conn:
        sql = "SELECT machine_id, name FROM api.machines WHERE machine_id = ANY(%s)"
        names = {str(m): n for m, n in await (await conn.execute(sql, (s["machine_ids"],))).fetchall()}
    at = ""
    if s.get("at"):
        at = datetime.fromisoformat(s["at"]).astimezone(ZoneInfo(s["timezone"])).strftime(AT_FORMAT)
    return {
        "schedule": s["schedule_id"], "version": str(s["version"]), "name": s["name"], "action": s["action"],
        "scenario": scenarios.get(s.get("scenario_id") or "", ""), "when_kind": "at" if s.get("at") else "cron",
        "at": at, "cron": s.get("cron") or "", "timezone": s["timezone"], "group": s.get("group") or "",
        "machines": " ".join(names.get(m, m) for m in s["machine_ids"]), "enabled": "on" if s["enabled"] else "",
    }  # fmt: skip


@router.get("/console/schedules/edit")
async def edit_form(request: Request, schedule: str = "") -> Response:
    got = await res_kit.opened(request, Role.OPERATOR, "PUT /schedules/{schedule_id}")
    if isinstance(got, Response):
        return got
    rt, who = got
    try:
        saved = await schedule_routes.get_schedule(_schedule_id({"schedule": [schedule]}), rt, who.principal)
    except DpmError as err:
        return pages.refusal(err, who)
    return await _form(rt, who, await _values(rt, who, saved), edit=True)


@router.post("/console/schedules/edit")
async def edit(request: Request) -> Response:
    got = await res_kit.posted(request, Role.OPERATOR, "PUT /schedules/{schedule_id}")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    values = {f: res_kit.field(fields, f) for f in (*FIELDS, "schedule", "version")}
    try:
        schedule_id = _schedule_id(fields)
        data = {**form_body(values), "version": values["version"] or None}
        body = res_kit.body(schedule_routes.EditIn, data)
        saved = await schedule_routes.replace_schedule(schedule_id, body, rt, who.principal.username)
    except DpmError as err:
        return await _form(rt, who, values, status=err.error.http_status, problem=res_kit.problem(err), edit=True)
    return pages.redirect(f"{HOME}?{urlencode({'done': 'saved', 'name': saved['name']})}")


@router.post("/console/schedules/pause")
async def pause(request: Request) -> Response:
    """Pause (``enabled`` false) or resume (true) a schedule from its row: one click, nothing lost."""
    got = await res_kit.posted(request, Role.OPERATOR, "PATCH /schedules/{schedule_id}")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    enabled = res_kit.field(fields, "enabled") == "true"
    try:
        body = schedule_routes.EnabledIn(enabled=enabled)
        saved = await schedule_routes.pause_schedule(_schedule_id(fields), body, rt, who.principal.username)
    except DpmError as err:
        return pages.refusal(err, who)
    done = "resumed" if enabled else "paused"
    return pages.redirect(f"{HOME}?{urlencode({'done': done, 'name': saved['name']})}")
