"""The HTTP side every service shares: binding with a clear "port in use" error, uvicorn without its
own signal handling (the service kernel owns SIGTERM), the request-body limit, and the health endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import socket
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from dpm_schemas import E, ports, text
from dpm_schemas.errors import DpmError

if TYPE_CHECKING:
    from dpm_runtime.service import Runtime

log = logging.getLogger(__name__)
F = Any  # an endpoint function
_MAX_BODY_ATTR = "__dpm_max_body__"


def bind(service: str, host: str, port: int) -> socket.socket:
    """Bind the service's listening socket now, so a taken port fails start-up with a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            setting = ports.SETTINGS.get(service, (f"DPM_{service.upper().replace('-', '_')}_PORT", port))[0]
            raise E.PORT_IN_USE(service=service, host=host, port=port, setting=setting) from exc
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the service kernel handles signals and drains in order


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (any case of "bearer"), else None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def required_bearer(headers: Mapping[str, str]) -> str:
    """The bearer token, or DPM-E401 for a call without one."""
    token = bearer(headers)
    if token is None:
        raise E.UNAUTHENTICATED()
    return token


def make_server(app: FastAPI, *, drain: float = 5) -> uvicorn.Server:
    """``drain``: seconds a stopping server lets the requests in flight finish before cancelling them."""
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=max(1, round(drain))
    )
    return _Server(config)


def max_body(limit: int) -> Callable[[F], F]:
    """Let one route accept bodies up to ``limit`` bytes (chunk uploads, CSV imports) where every
    other route keeps the service's limit. Goes under the route decorator."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _MAX_BODY_ATTR, limit)
        return endpoint

    return mark


class BodyLimit:
    """Pure ASGI, outermost: counts the body bytes a request really sends, declared by Content-Length
    or chunked, and answers 413 DPM-E409 once they pass the route's limit. The limit is looked up
    when the app first reads the body -- routing has picked the endpoint by then (``max_body``); a
    declared length over it is refused before a byte is read, a chunked body is cut off mid-stream.
    The app then sees a disconnect and its own answer is dropped. Nothing is buffered here."""

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    def limit_for(self, scope: dict[str, Any]) -> int:
        endpoint = scope.get("endpoint") or getattr(scope.get("route"), "endpoint", None)
        return int(getattr(endpoint, _MAX_BODY_ATTR, self.limit))

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        received, refused, started = 0, False, False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            limit = self.limit_for(scope)
            if received == 0 and declared.isdigit() and int(declared) > limit:
                refused = True
            else:
                message: dict[str, Any] = await receive()
                if message["type"] != "http.request":
                    return message
                received += len(message.get("body", b""))
                if received <= limit:
                    return message
                refused = True
            route = f"{scope['method']} {scope['path']}"
            log.warning("refused %s: body over %d bytes", route, limit)
            if not started:
                await _send_error(send, E.BODY_TOO_LARGE(limit=limit, route=route))
            return {"type": "http.disconnect"}

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out instead of whatever the app answers to the cut-off body
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # the app met the cut-off body (ClientDisconnect): the 413 already answered for it


async def _send_error(send: Callable[..., Any], exc: DpmError) -> None:
    response = JSONResponse({"error": exc.to_dict()}, status_code=exc.error.http_status)
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


@dataclass
class Health:
    """What /readyz reports while a service starts: why it is waiting, then live checks."""

    service: str
    waiting: dict[str, str] = field(
        default_factory=lambda: {"postgres": "connecting", "nats": "connecting", "startup": "pending"}
    )
    runtime: Runtime | None = None


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "alive", "service": request.app.state.health.service}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Ready: PostgreSQL and NATS are reachable now."""
        health: Health = request.app.state.health
        checks = dict(health.waiting)
        if health.runtime is not None:
            checks = await health.runtime.check()
        ready = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "waiting", "service": health.service, **checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/statusz")
    async def statusz(request: Request) -> dict[str, Any]:
        """What this process is doing: relay role and checkpoint, consumer and projection counters.
        Anonymous, so numbers and states only: error texts (which name hosts, users, SQL) go to the
        log, never here."""
        health: Health = request.app.state.health
        rt = health.runtime
        if rt is None:
            return {"service": health.service, "starting": {k: v.split(":")[0] for k, v in health.waiting.items()}}
        return {
            "service": health.service,
            "relay": None
            if rt.relay is None
            else {
                "active": rt.relay.stats.active,
                "checkpoint": rt.relay.stats.checkpoint,
                "published": rt.relay.stats.published,
            },
            "consumers": {name: _counters(vars(c.stats)) for name, c in rt.consumers.items()},
            "projections": {
                name: {"position": p.position, "quarantined": p.quarantined} for name, p in rt.projections.items()
            },
            # a service's own counters (e.g. pxe's dropped discoveries): app.state.counters() -> numbers
            "counters": _counters(getattr(request.app.state, "counters", dict)()),
        }

    return router


def _counters(stats: dict[str, Any]) -> dict[str, Any]:
    """The numeric fields of a stats record: counts are safe to show anyone, ``last_error`` is not."""
    return {k: v for k, v in stats.items() if isinstance(v, int | float)}


def install_error_handler(app: FastAPI) -> None:
    """Every ``DpmError`` becomes ``{"error": {code, title, message, remedy, details}}`` with its status
    (and Retry-After when the error names a ``retry_after``)."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DpmError)
        return error_response(exc)

    app.add_exception_handler(DpmError, handle)

    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        """A model built from request input refused it (an event field with a NUL...): the caller's
        422 with a code and the field, never a 500."""
        assert isinstance(exc, ValidationError)
        err = text.refusal(exc.errors(include_input=False), exc.title)
        return JSONResponse({"error": err.to_dict()}, status_code=err.error.http_status)

    app.add_exception_handler(ValidationError, refused)

    async def too_deep(request: Request, _exc: Exception) -> JSONResponse:
        """A body nested deeper than the JSON parser recurses (``[[[[...``): the caller's 422, not a 500."""
        log.warning("refused %s %s: body nested too deeply", request.method, request.url.path)
        err = E.INVALID_REQUEST(reason="the body is nested too deeply")
        return JSONResponse({"error": err.to_dict()}, status_code=err.error.http_status)

    app.add_exception_handler(RecursionError, too_deep)


def error_response(exc: DpmError) -> JSONResponse:
    """A catalogued error's answer: its status, its dict, and Retry-After when it names a ``retry_after``."""
    headers = {}
    if isinstance(wait := exc.details.get("retry_after"), int | float):  # throttled or unavailable: say when
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.error.http_status, headers=headers)


async def stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Stop accepting connections, let the requests in flight finish (up to the server's drain time),
    then return; calling it again once stopped returns at once."""
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task
