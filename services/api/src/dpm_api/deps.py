"""FastAPI dependencies as ``Annotated`` aliases: the running runtime and the authenticated caller.

Every route but the health checks needs a bearer token; reads need the viewer role, changes the
operator role, user and system administration the admin role.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request

from dpm_api.auth import Principal, resolve
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.events.users import Role


def get_runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise E.NOT_READY(service="api", reason="still connecting to PostgreSQL and NATS")
    return rt


async def get_principal(request: Request) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise E.UNAUTHENTICATED()
    rt = get_runtime(request)
    idle = timedelta(seconds=request.app.state.session_idle_timeout)
    async with rt.pool.connection() as conn:
        return await resolve(conn, token, bootstrap=request.app.state.api_token, idle=idle)


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    async def check(request: Request) -> Principal:
        principal = await get_principal(request)
        principal.require(role, f"{request.method} {request.url.path}")
        return principal

    return check


async def _actor(principal: Annotated[Principal, Depends(require(Role.OPERATOR))]) -> str:
    return principal.username


async def _admin(principal: Annotated[Principal, Depends(require(Role.ADMIN))]) -> str:
    return principal.username


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ViewerDep = Annotated[Principal, Depends(require(Role.VIEWER))]
ActorDep = Annotated[str, Depends(_actor)]  # an operator (or admin) making a change; the value is the actor
AdminDep = Annotated[str, Depends(_admin)]
