"""FastAPI dependencies as ``Annotated`` aliases: the running runtime and the authenticated actor."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from dpm_runtime.service import Runtime
from dpm_schemas import E


def get_runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise E.NOT_READY(service="api", reason="still connecting to PostgreSQL and NATS")
    return rt


def get_actor(request: Request) -> str:
    """The caller of a change. With ``DPM_API_TOKEN`` set, changes need ``Authorization: Bearer``."""
    token = request.app.state.api_token
    if token is None:
        return "anonymous"
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.encode()):
        raise E.UNAUTHENTICATED()
    return "admin"


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ActorDep = Annotated[str, Depends(get_actor)]
