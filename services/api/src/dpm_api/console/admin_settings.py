"""The settings page (admins): the login session policy in force (read only: set by the api's
environment), the bootstrap token's state with revoking it, and each group's network settings
(subnet, broadcast, gateway, description: where Wake-on-LAN goes). Every change goes through a
confirmation page that lists what changes, old and new; only the confirmed post calls the REST
route's own function (``PUT /groups/{name}``, ``DELETE /auth/bootstrap-token``) with its role."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import pages, res_kit, res_text
from dpm_api.console.pages import Visitor
from dpm_api.routes import auth as auth_routes
from dpm_api.routes import groups as group_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.groups import NEW_MACHINES
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/settings"
GROUP_FIELDS = ("subnet", "broadcast", "gateway", "description")
LABELS = {"subnet": "Subnet", "broadcast": "Directed broadcast", "gateway": "Gateway", "description": "Description"}
DONE = {"group": "Settings of group {name} saved.", "bootstrap": "The bootstrap token is revoked for good."}


def changes(old: Mapping[str, Any], new: Mapping[str, str]) -> list[dict[str, str]]:
    """The fields whose value changes, as (the form's label, old, new) texts ("none" for a blank value)."""
    out = []
    for key in GROUP_FIELDS:
        before, after = str(old.get(key) or ""), new.get(key, "")
        if before != after:
            out.append({"field": LABELS[key], "old": before or "none", "new": after or "none"})
    return out


async def _group(rt: Runtime, who: Visitor, name: str) -> dict[str, Any]:
    for g in await group_routes.list_groups(rt, who.principal):
        if g.name == name and name != NEW_MACHINES:
            return g.model_dump(mode="json")
    raise E.CONSOLE_FIELD_INVALID(field="group", reason=f"no group {name!r} with settings to change")


async def _page(request: Request, rt: Runtime, who: Visitor, **extra: Any) -> Response:
    groups = [g.model_dump(mode="json") for g in await group_routes.list_groups(rt, who.principal)]
    token = await auth_routes.bootstrap_token_status(request, rt, who.principal.username)
    policy = request.app.state.sessions
    context = {"notice": None, "problem": None, **extra}
    return pages.render(
        "settings.html", visitor=who, title="Settings", nav="settings", groups=groups, builtin=NEW_MACHINES,
        token=token.model_dump(mode="json"), stamp=res_text.stamp, idle=int(policy.idle.total_seconds()),
        max_age=int(policy.max_age.total_seconds()), **context,
    )  # fmt: skip


@router.get("/console/settings")
async def settings_page(request: Request, done: str = "", group: str = "") -> Response:
    got = await res_kit.opened(request, Role.ADMIN, "GET /auth/bootstrap-token")
    if isinstance(got, Response):
        return got
    rt, who = got
    return await _page(request, rt, who, notice=DONE[done].format(name=group) if done in DONE else None)


def _group_form(
    who: Visitor, name: str, values: Mapping[str, str], *, status: int = 200, problem: Any = None
) -> Response:
    return pages.render(
        "settings_group.html", status=status, visitor=who, title=f"Settings of group {name}", nav="settings",
        group=name, values=dict(values), problem=problem,
    )  # fmt: skip


@router.get("/console/settings/group")
async def group_form(request: Request, group: str = "") -> Response:
    got = await res_kit.opened(request, Role.ADMIN, "PUT /groups/{name}")
    if isinstance(got, Response):
        return got
    rt, who = got
    try:
        found = await _group(rt, who, group)
    except DpmError as err:
        return pages.refusal(err, who)
    return _group_form(who, group, {k: str(found.get(k) or "") for k in GROUP_FIELDS})


@router.post("/console/settings/group")
async def save_group(request: Request) -> Response:
    """First post: checked by the route's own model, then the confirmation page listing the changes;
    the confirmed post saves them with ``PUT /groups/{name}``'s function."""
    got = await res_kit.posted(request, Role.OPERATOR, "PUT /groups/{name}")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "group")
    values = {k: res_kit.field(fields, k) for k in GROUP_FIELDS}
    try:
        current = await _group(rt, who, name)
        body = res_kit.body(
            group_routes.GroupIn, {k: (v or None) if k != "description" else v for k, v in values.items()}
        )
        if res_kit.field(fields, "confirm") != res_kit.CONFIRM:
            return _confirm(who, name, values, changes(current, values))
        await group_routes.define_group(name, body, rt, who.principal.username)
    except DpmError as err:
        return _group_form(who, name, values, status=err.error.http_status, problem=res_kit.problem(err))
    return pages.redirect(f"{HOME}?{urlencode({'done': 'group', 'group': name})}")


def _confirm(who: Visitor, name: str, values: Mapping[str, str], changed: list[dict[str, str]]) -> Response:
    question = f"Save these changes to the settings of group {name}?" if changed else "Nothing changes; save anyway?"
    return res_kit.confirmation(
        who, nav="settings", title="Save group settings", question=question, action="/console/settings/group",
        hidden={"group": name, **values}, back=f"/console/settings/group?{urlencode({'group': name})}",
        changes=changed, danger=False,
    )  # fmt: skip


@router.get("/console/settings/bootstrap/revoke")
async def confirm_revoke(request: Request) -> Response:
    got = await res_kit.opened(request, Role.ADMIN, "DELETE /auth/bootstrap-token")
    if isinstance(got, Response):
        return got
    _rt, who = got
    question = "Revoke the bootstrap token (DPM_API_TOKEN) for good? Scripts using it stop working."
    return res_kit.confirmation(
        who, nav="settings", title="Revoke the bootstrap token", question=question,
        action="/console/settings/bootstrap/revoke", hidden={}, back=HOME,
    )  # fmt: skip


@router.post("/console/settings/bootstrap/revoke")
async def revoke(request: Request) -> Response:
    got = await res_kit.posted(request, Role.ADMIN, "DELETE /auth/bootstrap-token")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    try:
        res_kit.confirmed(fields, "revoke the bootstrap token")
        await auth_routes.revoke_bootstrap_token(request, rt, who.principal.username)
    except DpmError as err:
        return await _page(request, rt, who, problem=res_kit.problem(err))
    return pages.redirect(f"{HOME}?done=bootstrap")
