"""Requests while PostgreSQL is down answer fast and in the catalogue, in one place for every service.

A route takes its connection with ``rt.pool.connection()`` like any other code. Inside an HTTP
request that checkout waits at most ``db_request_timeout`` (a few seconds: ``RequestCheckout`` sets
it for the request's context) instead of the pool's 30 s, and a pool that gives up, a connection
lost mid-request or a pool closed by a stopping service becomes a 503 with a code and
``Retry-After`` (DPM-E039, DPM-E040) instead of a plain-text 500. Consumers, projections, rounds and
relays take their connections outside any request, so they keep the pool's long wait and their
own retries. Callers (the deploy client, the agent, the CLI) retry a 503 after Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from dpm_runtime.eventlog import Conn
from dpm_runtime.http import error_response
from dpm_schemas import E

log = logging.getLogger(__name__)
RETRY_AFTER = 2  # seconds a caller waits before sending the request again
_CHECKOUT: ContextVar[float | None] = ContextVar("dpm_request_checkout", default=None)
# SQLSTATEs that say "the server went away", not "this statement failed": connection exceptions
# (class 08), and admin shutdown, crash shutdown, cannot connect now (57P01..57P03)
_GONE = ("08", "57P01", "57P02", "57P03")


class Pool(AsyncConnectionPool[Conn]):
    """The service's pool: a checkout without its own timeout waits the request's short one when it
    is made for an HTTP request, the pool's own (long) one everywhere else."""

    async def getconn(self, timeout: float | None = None) -> Conn:
        return await super().getconn(_CHECKOUT.get() if timeout is None else timeout)


class RequestCheckout:
    """Pure ASGI: every HTTP request's database checkouts wait at most ``timeout`` seconds. A
    WebSocket session is long-lived background work of its own and keeps the pool's wait."""

    def __init__(self, app: Any, *, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _CHECKOUT.set(self.timeout)
        try:
            await self.app(scope, receive, send)
        finally:
            _CHECKOUT.reset(token)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be used now (worth a retry later), not that a
    statement failed (a serialization failure or a constraint stays the route's own business)."""
    if isinstance(exc, PoolTimeout | PoolClosed):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(_GONE)


def install_unavailable_handler(app: FastAPI) -> None:
    """Map an unavailable database to DPM-E039 (or DPM-E040 while stopping), with Retry-After. The
    driver's own text names hosts and users: it goes to the log, never into the answer."""

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not is_unavailable(exc):
            raise exc  # a statement's own failure: a 500 as before
        service = request.app.state.health.service
        log.warning("%s %s: PostgreSQL unavailable: %r", request.method, request.url.path, exc)
        if isinstance(exc, PoolClosed):
            return error_response(E.SERVICE_STOPPING(service=service, retry_after=RETRY_AFTER))
        reason = (
            f"no connection within {_CHECKOUT.get() or 0:g} s"
            if isinstance(exc, PoolTimeout)
            else "the connection to it was lost"
        )
        return error_response(E.DATABASE_UNAVAILABLE(service=service, reason=reason, retry_after=RETRY_AFTER))

    app.add_exception_handler(psycopg.OperationalError, unavailable)
