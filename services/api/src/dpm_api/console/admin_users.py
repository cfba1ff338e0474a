"""The users page (admins): every user with its role, adding a user, changing a role, disabling a
user (behind a confirmation page), and the visitor's own API tokens: issuing one (its value shown
once, on the answer to the post, never again) and revoking one (confirmed). Every action is the REST
route's own function with its role, so the page refuses what ``/users`` and ``/auth/tokens`` refuse,
with the same codes; a refusal shows inline with the values typed (never the password)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpm_api.console import pages, res_kit, res_text
from dpm_api.console.pages import Visitor
from dpm_api.routes import auth as auth_routes
from dpm_api.routes import users as user_routes
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.errors import DpmError
from dpm_schemas.events.users import Role

router = APIRouter(include_in_schema=False)
HOME = "/console/users"
ROLES = [r.value for r in Role]
DONE = {
    "created": "User {name} created.",
    "role": "Role of {name} changed.",
    "disabled": "User {name} disabled: its sessions ended and its tokens stopped working.",
    "revoked": "Token {name} revoked.",
    "password": "Password of {name} set: its sessions ended and its API tokens were revoked.",
}


async def listing(rt: Runtime, who: Visitor, *, status: int = 200, **extra: Any) -> Response:
    """The users page; ``extra``: a ``notice``, an action's ``problem``, the add form's ``form``, or
    a just issued token (``issued``, shown this once)."""
    users = [u.model_dump(mode="json") for u in await user_routes.list_users(rt, who.principal.username)]
    for u in users:
        u["created"] = res_text.stamp(u["created_at"])
    tokens = [t.model_dump(mode="json") for t in await auth_routes.list_tokens(rt, who.principal)]
    for t in tokens:
        t["created"] = res_text.stamp(t["created_at"])
    context = {"notice": None, "problem": None, "form": {"username": "", "role": "viewer"}, "issued": None, **extra}
    return pages.render(
        "users.html", status=status, visitor=who, title="Users and tokens", nav="users", users=users,
        tokens=tokens, roles=ROLES, me=who.principal.username, **context,
    )  # fmt: skip


def _done(done: str, name: str) -> Response:
    return pages.redirect(f"{HOME}?{urlencode({'done': done, 'user': name})}")


@router.get("/console/users")
async def users_page(request: Request, done: str = "", user: str = "") -> Response:
    got = await res_kit.opened(request, Role.ADMIN, "GET /users")
    if isinstance(got, Response):
        return got
    rt, who = got
    return await listing(rt, who, notice=DONE[done].format(name=user) if done in DONE else None)


@router.post("/console/users")
async def add_user(request: Request) -> Response:
    got = await res_kit.posted(request, Role.ADMIN, "POST /users")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    typed = {"username": res_kit.field(fields, "username"), "role": res_kit.field(fields, "role", "viewer")}
    password = pages.one(fields, "password") or ""
    try:
        body = res_kit.body(user_routes.UserIn, {**typed, "password": password})
        await user_routes.create_user(body, request, rt, who.principal.username)
    except DpmError as err:
        return await listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err), form=typed)
    return _done("created", typed["username"])


@router.post("/console/users/role")
async def change_role(request: Request) -> Response:
    got = await res_kit.posted(request, Role.ADMIN, "PUT /users/{username}/role")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "username")
    try:
        body = res_kit.body(user_routes.RoleIn, {"role": res_kit.field(fields, "role")})
        await user_routes.change_role(name, body, rt, who.principal.username)
    except DpmError as err:
        return await listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err))
    return _done("role", name)


@router.post("/console/users/password")
async def set_password(request: Request) -> Response:
    """Set a user's password (``PUT /users/{username}/password``: your own needs your current one)."""
    got = await res_kit.posted(request, Role.ADMIN, "PUT /users/{username}/password")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "username")
    typed = {"password": pages.one(fields, "password") or "", "current_password": pages.one(fields, "current") or None}
    try:
        body = res_kit.body(user_routes.PasswordIn, typed)
        await user_routes.change_password(name, body, request, rt, who.principal)
    except DpmError as err:
        return await listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err))
    return _done("password", name)


@router.get("/console/users/disable")
async def confirm_disable(request: Request, user: str = "") -> Response:
    got = await res_kit.opened(request, Role.ADMIN, "DELETE /users/{username}")
    if isinstance(got, Response):
        return got
    _rt, who = got
    question = f"Disable the user {user}? Its sessions end and its API tokens stop working; its history stays."
    return res_kit.confirmation(
        who, nav="users", title="Disable user", question=question, action="/console/users/disable",
        hidden={"username": user}, back=HOME,
    )  # fmt: skip


@router.post("/console/users/disable")
async def disable(request: Request) -> Response:
    got = await res_kit.posted(request, Role.ADMIN, "DELETE /users/{username}")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "username")
    try:
        res_kit.confirmed(fields, f"disable the user {name}")
        await user_routes.disable_user(name, rt, who.principal.username)
    except DpmError as err:
        return await listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err))
    return _done("disabled", name)


@router.post("/console/users/tokens")
async def issue_token(request: Request) -> Response:
    """A token for the visitor (``POST /auth/tokens``); the answer is the one page that shows it."""
    got = await res_kit.posted(request, Role.ADMIN, "POST /auth/tokens")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    try:
        body = res_kit.body(auth_routes.TokenIn, {"name": res_kit.field(fields, "token_name")})
        issued = await auth_routes.issue_token(body, rt, who.principal)
    except DpmError as err:
        return await listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err))
    return await listing(rt, who, status=201, issued=issued.model_dump(mode="json"))


def token_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise E.CONSOLE_FIELD_INVALID(field="token", reason="not a token id") from None


@router.get("/console/users/tokens/revoke")
async def confirm_revoke(request: Request, token: str = "", name: str = "") -> Response:
    got = await res_kit.opened(request, Role.ADMIN, "DELETE /auth/tokens/{token_id}")
    if isinstance(got, Response):
        return got
    _rt, who = got
    return res_kit.confirmation(
        who, nav="users", title="Revoke token", question=f"Revoke the API token {name}? Scripts using it stop working.",
        action="/console/users/tokens/revoke", hidden={"token": token, "name": name}, back=HOME,
    )  # fmt: skip


@router.post("/console/users/tokens/revoke")
async def revoke(request: Request) -> Response:
    got = await res_kit.posted(request, Role.ADMIN, "DELETE /auth/tokens/{token_id}")
    if isinstance(got, Response):
        return got
    rt, who, fields = got
    name = res_kit.field(fields, "name")
    try:
        res_kit.confirmed(fields, f"revoke the token {name}")
        await auth_routes.revoke_token(token_id(res_kit.field(fields, "token")), rt, who.principal)
    except DpmError as err:
        return await listing(rt, who, status=err.error.http_status, problem=res_kit.problem(err))
    return _done("revoked", name)
