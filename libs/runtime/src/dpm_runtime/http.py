"""The HTTP side every service shares: binding with a clear "port in use" error, uvicorn without its
own signal handling (the service kernel owns SIGTERM), and the health endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from dpm_schemas import E, ports
from dpm_schemas.errors import DpmError

if TYPE_CHECKING:
    from dpm_runtime.service import Runtime


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


def make_server(app: FastAPI) -> uvicorn.Server:
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=5)
    return _Server(config)


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
        """What this process is doing: relay role and checkpoint, consumer and projection counters."""
        health: Health = request.app.state.health
        rt = health.runtime
        if rt is None:
            return {"service": health.service, "starting": dict(health.waiting)}
        return {
            "service": health.service,
            "relay": None
            if rt.relay is None
            else {
                "active": rt.relay.stats.active,
                "checkpoint": rt.relay.stats.checkpoint,
                "published": rt.relay.stats.published,
            },
            "consumers": {name: vars(c.stats) for name, c in rt.consumers.items()},
            "projections": {name: {"position": p.position} for name, p in rt.projections.items()},
        }

    return router


def install_error_handler(app: FastAPI) -> None:
    """Every ``DpmError`` becomes ``{"error": {code, title, message, remedy, details}}`` with its status."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DpmError)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.error.http_status)

    app.add_exception_handler(DpmError, handle)


async def stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task
