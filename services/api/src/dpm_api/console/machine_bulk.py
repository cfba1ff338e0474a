"""Bulk actions on the machines selected in the list. Each calls the REST route's own function, so
the console refuses what the API refuses, with the same codes: power on, power off and reboot (the
agent's shutdown and reboot commands), suspend (each machine's execution in progress), clear errors
and run a scenario (one REST call for all the machines: all of them, or none). A per-machine action
goes on for the other machines when one is refused; the page then lists each refusal's code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import machine_data, pages
from dpm_api.deps import get_runtime
from dpm_api.routes import machines as machine_routes
from dpm_api.routes import scenarios as scenario_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.agent_protocol import Action
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/machines"
BULK_ACTIONS = {
    "power_on": "Power on",
    "power_off": "Power off",
    "reboot": "Reboot",
    "suspend": "Suspend",
    "clear": "Clear errors",
    "run": "Run scenario",
}
COMMAND_TIMEOUT = 10.0  # seconds an agent has to acknowledge a bulk shutdown or reboot
PARALLEL = 8  # machines acted on at once (each holds a database connection for its event)


@dataclass(frozen=True, slots=True)
class Outcome:
    machine_id: uuid.UUID
    name: str
    error: dict[str, object] | None  # the refusal's code, message and remedy; None when done


def selected(fields: dict[str, list[str]]) -> list[uuid.UUID]:
    """The selected machines' ids, each once, or DPM-E400 (none, too many, or not ids)."""
    chosen = fields.get("machine", [])
    if not chosen or len(chosen) > pages.MAX_SELECTED:
        raise E.INVALID_REQUEST(reason=f"select between 1 and {pages.MAX_SELECTED} machines")
    try:
        return list(dict.fromkeys(uuid.UUID(value) for value in chosen))
    except ValueError:
        raise E.INVALID_REQUEST(reason="a selected machine id is not a UUID") from None


async def each(
    ids: list[uuid.UUID], names: dict[uuid.UUID, str], act: Callable[[uuid.UUID], Awaitable[object]]
) -> list[Outcome]:
    """``act`` on every machine, a few at a time; a refusal is that machine's outcome, not the end."""
    gate = asyncio.Semaphore(PARALLEL)

    async def one(mid: uuid.UUID) -> Outcome:
        async with gate:
            try:
                await act(mid)
            except DpmError as err:
                return Outcome(mid, names.get(mid, str(mid)), err.to_dict())
        return Outcome(mid, names.get(mid, str(mid)), None)

    return list(await asyncio.gather(*(one(mid) for mid in ids)))


def _command(request: Request, rt: Runtime, actor: str, action: Action) -> Callable[[uuid.UUID], Awaitable[object]]:
    body = machine_routes.CommandIn(action=action, timeout=COMMAND_TIMEOUT)
    return lambda mid: machine_routes.command_machine(mid, body, request, rt, actor)


async def _suspend(rt: Runtime, ids: list[uuid.UUID], names: dict[uuid.UUID, str], actor: str) -> list[Outcome]:
    """Suspend each machine's execution in progress; a machine without one is DPM-E434 (and when no
    selected machine has one, the whole request is)."""
    async with rt.pool.connection() as conn:
        found = await machine_data.current(conn, ids)
    running = {mid: c.execution_id for mid, c in found.items() if c.open}
    if not running:
        raise E.CONSOLE_NOTHING_TO_SUSPEND(machine=f"None of the {len(ids)} selected machines")

    async def act(mid: uuid.UUID) -> object:
        if mid not in running:
            raise E.CONSOLE_NOTHING_TO_SUSPEND(machine=names.get(mid, str(mid)))
        return await scenario_routes.suspend(running[mid], rt, actor)

    return await each(ids, names, act)


async def _all_at_once(rt: Runtime, ids: list[uuid.UUID], action: str, fields: dict[str, list[str]], actor: str) -> int:
    """Clear errors and run a scenario: one REST call for every selected machine; how many it took."""
    machines = [str(mid) for mid in ids]
    if action == "clear":
        done = await scenario_routes.clear(scenario_routes.ClearIn(machines=machines), rt, actor)
        return int(done["cleared"])
    scenario = (pages.one(fields, "scenario") or "").strip()
    if not scenario:
        raise E.INVALID_REQUEST(reason="choose the scenario to run")
    run = await scenario_routes.run_scenario(scenario, scenario_routes.RunIn(machines=machines), rt, actor)
    return len(run["machines"])


async def _act(
    request: Request, rt: Runtime, action: str, ids: list[uuid.UUID], fields: dict[str, list[str]], actor: str
) -> tuple[list[Outcome], int | None]:
    """The outcomes per machine, or (for the all-at-once actions) how many machines it took."""
    async with rt.pool.connection() as conn:
        names = await machine_data.names(conn, ids)
    if action in ("clear", "run"):
        return [], await _all_at_once(rt, ids, action, fields, actor)
    if action == "suspend":
        return await _suspend(rt, ids, names, actor), None
    if action == "power_on":
        return await each(ids, names, lambda mid: machine_routes.power_on(mid, rt, actor)), None
    command = Action.SHUTDOWN if action == "power_off" else Action.REBOOT
    return await each(ids, names, _command(request, rt, actor, command)), None


@router.post("/console/machines/bulk")
async def bulk(request: Request) -> Response:
    """One action on the selected machines, with the operator role the REST routes require."""
    rt = get_runtime(request)
    who = None
    try:
        who, fields = await pages.posted(request, rt, Role.OPERATOR, "POST /console/machines/bulk")
        action = pages.one(fields, "action") or ""
        if action not in BULK_ACTIONS:
            raise E.INVALID_REQUEST(reason=f"no bulk action {action[:40]!r}")
        ids = selected(fields)
        outcomes, count = await _act(request, rt, action, ids, fields, who.principal.username)
    except DpmError as err:
        return pages.refusal(err, who)
    refused = [o for o in outcomes if o.error is not None]
    if count is None and refused:
        done = len(outcomes) - len(refused)
        title = f"{BULK_ACTIONS[action]}: {done} of {len(outcomes)} done"
        return pages.render("machine_bulk.html", visitor=who, title=title, refused=refused, done=done)
    return pages.redirect(f"{HOME}?{urlencode({'done': action, 'count': len(ids) if count is None else count})}")


def notice(done: str | None, count: str | None) -> str | None:
    """The list's line after a bulk action (from the redirect's ``done`` and ``count``: keys, never text)."""
    n = pages_count(count)
    if done == "imported":
        return f"CSV imported: {machines(n)} added or changed."
    if done == "deleted":
        return "Machine deleted."
    if done not in BULK_ACTIONS:
        return None
    if done == "clear":
        return f"Errors cleared on {machines(n)}."
    if done == "run":
        return f"Scenario run requested for {machines(n)}."
    return f"{BULK_ACTIONS[done]} requested for {machines(n)}."


def machines(n: int) -> str:
    """A count of machines in words: "1 machine", "3 machines" (never "machine(s)")."""
    return f"{n} machine" if n == 1 else f"{n} machines"


def pages_count(raw: str | None) -> int:
    try:
        return max(0, min(int(raw or "0"), 1_000_000))
    except ValueError:
        return 0
