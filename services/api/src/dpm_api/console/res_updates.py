"""The packages page's actions, each the REST route's own function with its role (operator): a
source's "sync now", "notify now" (push due high and highest urgency packages at once), and a
machine's auto-update time. A refusal shows on the packages page with the API's code and remedy."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import pages, res_kit, res_packages, res_text
from dpm_api.routes import packages as package_routes
from dpm_api.routes import sources as source_routes
from dpm_api.routes import updates as update_routes
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)


def _done(done: str, name: str = "") -> Response:
    return pages.redirect(f"{res_packages.HOME}?{urlencode({'done': done, 'name': name})}")


@router.post("/console/packages/sync")
async def sync_now(request: Request) -> Response:
    got = await res_kit.posted(request, Role.OPERATOR, "POST /sources/{name}/sync")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "source")
    try:
        await source_routes.sync_source(name, rt, who.principal.username)
    except DpmError as err:
        return await res_packages.listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err))
    return _done("synced", name)


@router.post("/console/packages/notify")
async def notify_now(request: Request) -> Response:
    """Notify now, for the machines named (none: every online machine)."""
    got = await res_kit.posted(request, Role.OPERATOR, "POST /updates/notify")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    typed = {"machines": res_text.words(res_kit.field(fields, "machines"))}
    try:
        body = res_kit.body(package_routes.NotifyIn, typed)
        await package_routes.notify_updates(body, rt, who.principal.username)
    except DpmError as err:
        status = err.error.http_status
        return await res_packages.listing(rt, who, status=status, problem=res_kit.problem(err), form=typed)
    return _done("notified")


@router.post("/console/packages/auto-update")
async def auto_update(request: Request) -> Response:
    """A machine's auto-update time (HH:MM in its zone; blank: none)."""
    got = await res_kit.posted(request, Role.OPERATOR, "PUT /machines/{machine}/auto-update")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    machine = res_kit.field(fields, "machine")
    typed = {"at": res_kit.field(fields, "at") or None, "timezone": res_kit.field(fields, "timezone") or "UTC"}
    try:
        body = res_kit.body(update_routes.AutoUpdateTimeIn, typed)
        await update_routes.set_auto_update_time(machine, body, rt, who.principal.username)
    except DpmError as err:
        form = {**typed, "machine": machine}
        return await res_packages.listing(
            rt, who, status=err.error.http_status, problem=res_kit.problem(err), form=form
        )
    return _done("auto-update", machine)
