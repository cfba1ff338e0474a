"""FastAPI dependencies as ``Annotated`` aliases: the running runtime and the authenticated caller.

Every route but the health checks needs a bearer token; reads need the viewer role, changes the
operator role, user and system administration the admin role. A route declares its role with
``Depends(require(role))`` (or one of the aliases below); the role-matrix test reads those
declarations off the route table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from dpm_api import bootstrap_token
from dpm_api.auth import Principal, resolve
from dpm_runtime.http import required_bearer
from dpm_runtime.service import Runtime
from dpm_schemas import E
from dpm_schemas.events.users import Role


def get_runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise E.NOT_READY(service="api", reason="still connecting to PostgreSQL and NATS")
    return rt


def now(request: Request) -> datetime:
    """The api's clock (``app.state.clock``: tests inject one to expire sessions and lockouts)."""
    clock: Callable[[], datetime] = getattr(request.app.state, "clock", lambda: datetime.now(UTC))
    return clock()


async def get_principal(request: Request) -> Principal:
    token = required_bearer(request.headers)
    rt = get_runtime(request)
    state = request.app.state
    if state.bootstrap_token.matches(token):
        return await bootstrap_token.principal(rt, state.bootstrap_token, now(request))
    async with rt.pool.connection() as conn:
        return await resolve(conn, token, sessions=state.sessions, now=now(request))


class RoleCheck:
    """The dependency ``require(role)`` returns: authenticates, then checks the role."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, request: Request) -> Principal:
        principal = await get_principal(request)
        principal.require(self.role, f"{request.method} {request.url.path}")
        return principal


def require(role: Role) -> RoleCheck:
    return RoleCheck(role)


async def _actor(principal: Annotated[Principal, Depends(require(Role.OPERATOR))]) -> str:
    return principal.username


async def _admin(principal: Annotated[Principal, Depends(require(Role.ADMIN))]) -> str:
    return principal.username


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ViewerDep = Annotated[Principal, Depends(require(Role.VIEWER))]
ActorDep = Annotated[str, Depends(_actor)]  # an operator (or admin) making a change; the value is the actor
AdminDep = Annotated[str, Depends(_admin)]
