"""Every route of the api, as anonymous, viewer, operator and admin, generated from the route table:
a route declares its role with ``Depends(require(role))`` (deps.py), and the answers must match it --
401 for anonymous, 403 below the role, anything but 401/403 at or above it. A route that declares no
role must be in the explicit allowlist of anonymous routes, so a new route cannot be left open by
forgetting its dependency."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIWebSocketRoute
from starlette.routing import WebSocketRoute

from dpm_api.deps import RoleCheck, get_principal
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing.services import running
from dpm_schemas.events.users import Role

pytestmark = pytest.mark.integration

ANONYMOUS = {
    ("POST", "/auth/login"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/statusz"),  # counters only, no error text (see test_auth_security)
    ("POST", "/deploy/v1/steps"),  # the deploy routes check their own per-execution token
    ("GET", "/deploy/v1/step"),
    ("POST", "/deploy/v1/transfers"),
    ("POST", "/deploy/v1/disks"),
    ("PUT", "/deploy/v1/logs"),  # its own token rule: the step's client, up to 10 min after the step (ADR 0015)
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
# The web console's pages check their own session cookie, never a bearer header (test_console): each is
# probed below with the admin's token and must answer as to a stranger. These need no session at all.
CONSOLE_OPEN = {("GET", "/"), ("GET", "/console/static/{name}"), ("GET", "/console/login"), ("POST", "/console/login")}
# Routes whose handler asks more than they declare, for the dummy arguments used here.
STRICTER = {("PUT", "/users/{username}/password"): Role.ADMIN}  # someone else's password (not the caller's)
BODIES = {("PUT", "/users/{username}/password"): {"password": "long-enough-1"}}  # valid, to reach the check
ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)


def table(app: Any) -> Iterator[tuple[str, str, Any]]:
    """(method, path template, dependant) of every route, inside included routers too; a WebSocket
    route is method WEBSOCKET, and anything else without methods is "ANY" (so it must be named)."""
    stack = list(app.router.routes)
    while stack:
        route = stack.pop(0)
        if hasattr(route, "effective_route_contexts"):  # FastAPI's include_router wrapper
            stack.extend(route.effective_route_contexts())
            continue
        original = getattr(route, "original_route", None) or route
        if isinstance(original, (APIWebSocketRoute, WebSocketRoute)):
            yield "WEBSOCKET", original.path, None
            continue
        path = getattr(route, "path_format", None) or getattr(route, "path", "?")
        methods = getattr(route, "methods", None) or {"ANY"}
        methods = methods - {"HEAD"} if "GET" in methods else methods  # a HEAD-only route is probed too
        for method in sorted(methods):
            yield method, path, getattr(route, "dependant", None)


def routes(app: Any) -> Iterator[tuple[str, str, Dependant | None]]:
    """The HTTP routes of ``table`` (the api serves no WebSocket; test_role_matrix_services checks that)."""
    return ((m, p, d) for m, p, d in table(app) if m not in ("WEBSOCKET", "ANY"))


def declared_role(dependant: Dependant | None) -> Role | None:
    """The highest role among the route's dependencies (any authenticated caller counts as viewer)."""
    found: list[Role] = []
    pending = list(dependant.dependencies) if dependant else []
    while pending:
        dep = pending.pop()
        if isinstance(dep.call, RoleCheck):
            found.append(dep.call.role)
        elif dep.call is get_principal:
            found.append(Role.VIEWER)
        pending.extend(dep.dependencies)
    return max(found, key=lambda r: r.rank, default=None)


def concrete(path: str, dependant: Dependant | None) -> str:
    """The template with dummy values: a UUID where the parameter is one, else a plain name."""
    for param in dependant.path_params if dependant else []:
        dummy = str(uuid.uuid4()) if param.field_info.annotation is uuid.UUID else "x"
        path = path.replace(f"{{{param.name}}}", dummy).replace(f"{{{param.name}:path}}", dummy)
    return path


async def status(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], body: Any) -> int:
    """The answer's status only (streams such as SSE are not read)."""
    content = {"json": body} if method in ("POST", "PUT", "PATCH") else {}
    async with http.stream(method, path, headers=headers, **content) as response:
        return response.status_code


async def console_status(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> str | int:
    """ "login" when a console route sends the caller to the login page, else the status."""
    async with http.stream(method, path, headers=headers, data={} if method == "POST" else None) as response:
        if response.status_code == 303 and response.headers["location"].startswith("/console/login"):
            return "login"
        return response.status_code


async def role_tokens(api) -> dict[Role, dict[str, str]]:
    """An API token per role (tokens, not sessions: calling /auth/logout must not end them)."""
    tokens = {}
    for role in ROLES:
        name, password = f"{role.value}1", f"{role.value}-secret-1"
        await api.http.post("/users", json={"username": name, "password": password, "role": role.value})
        login = await api.http.post("/auth/login", json={"username": name, "password": password}, headers={})
        session = {"Authorization": f"Bearer {login.json()['token']}"}
        issued = await api.http.post("/auth/tokens", headers=session, json={"name": "matrix"})
        tokens[role] = {"Authorization": f"Bearer {issued.json()['token']}"}
    return tokens


async def test_every_route_answers_each_role_as_it_declares(api_service, auth) -> None:
    service = api_service(api_pxe_url=f"http://127.0.0.1:{free_port()}", api_imager_port=free_port())
    async with running(service, headers=auth) as api, httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        tokens = await role_tokens(api)
        table = list(routes(service.app))
        console = {(m, p) for m, p, _ in table if p == "/" or p.startswith("/console/")}
        undeclared = {(m, p) for m, p, dep in table if declared_role(dep) is None} - console
        assert undeclared == ANONYMOUS, f"routes without a role that are not allowlisted: {undeclared - ANONYMOUS}"
        assert console >= CONSOLE_OPEN
        strangers = [
            (method, template, got)
            for method, template, dependant in table
            if (method, template) in console - CONSOLE_OPEN
            and (got := await console_status(http, method, concrete(template, dependant), tokens[Role.ADMIN]))
            not in ("login", 401, 403)
        ]
        assert not strangers, f"console routes that answered a bearer token as a session: {strangers}"
        wrong = []
        for method, template, dependant in table:
            needed = STRICTER.get((method, template)) or declared_role(dependant)
            if needed is None:
                continue
            path, body = concrete(template, dependant), BODIES.get((method, template), {})
            if (got := await status(http, method, path, {}, body)) != 401:
                wrong.append((method, template, "anonymous", got))
            for role in ROLES:
                got = await status(http, method, path, tokens[role], body)
                expected_denied = role.rank < needed.rank
                if expected_denied != (got == 403) or got == 401:
                    wrong.append((method, template, role.value, got))
        assert not wrong, wrong
        assert len(table) > 50  # the table really was walked
