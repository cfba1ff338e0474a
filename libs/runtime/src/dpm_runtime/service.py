"""The service kernel: one lifecycle for every dpm service.

``serve(service)``: bind the HTTP port (clear error if taken) and answer /healthz at once; wait for
PostgreSQL (applying migrations) and NATS with logged retries while /readyz says why; declare the
stream, consumers and projections; run them in one task group with the relay on standby. SIGTERM
or SIGINT drains: consumers finish the message in hand, then connections close in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.bus import await_events_stream, connect_nats, ensure_events_stream
from dpm_runtime.consumer import ConsumerRunner, ConsumerSpec
from dpm_runtime.eventlog import Conn, EventLog
from dpm_runtime.http import BodyLimit, Health, bind, health_router, install_error_handler, make_server, stop_server
from dpm_runtime.logs import setup_logging
from dpm_runtime.migrations import Migration, await_migrated, migrate
from dpm_runtime.projection import Projection, ProjectionRunner
from dpm_runtime.relay import Relay
from dpm_runtime.retry import wait_for_dependency
from dpm_runtime.settings import ServiceSettings
from dpm_runtime.telemetry import TracingMiddleware, make_tracer_provider
from dpm_runtime.textguard import TextGuard
from dpm_schemas.errors import DpmError

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The connections a running service hands to its handlers, routes and tasks."""

    name: str
    settings: ServiceSettings
    pool: AsyncConnectionPool[Conn]
    nc: NATS
    js: JetStreamContext
    eventlog: EventLog
    tracer: trace.Tracer
    stop: asyncio.Event
    projections: dict[str, ProjectionRunner] = field(default_factory=dict)
    consumers: dict[str, ConsumerRunner] = field(default_factory=dict)
    relay: Relay | None = None

    async def check(self) -> dict[str, str]:
        checks = {"postgres": "ok", "nats": "ok"}
        try:
            async with asyncio.timeout(2):
                async with self.pool.connection() as conn:
                    await conn.execute("SELECT 1")
        except Exception as exc:
            checks["postgres"] = f"unreachable: {exc!r}"[:300]
        if not self.nc.is_connected:
            checks["nats"] = "reconnecting" if self.nc.is_reconnecting else "disconnected"
        return checks

    def catch_up(self, projection: str) -> CatchUp:
        """Wait until ``projection`` has applied a position: a handler dependency bound in ``wire``,
        resolved when awaited because the projection runners start after ``wire`` returns."""

        async def wait(position: int) -> bool:
            return await self.projections[projection].wait_for(position)

        return wait


Task = Callable[[Runtime], Coroutine[Any, Any, None]]
CatchUp = Callable[[int], Awaitable[bool]]  # Runtime.catch_up: True once the position is applied


@dataclass
class Wiring:
    """What a service runs once connected; built by its bootstrap from the ``Runtime``."""

    ddl: Sequence[str] = ()  # CREATE ... IF NOT EXISTS run as the service role at start-up
    consumers: Sequence[ConsumerSpec] = ()
    projections: Sequence[Projection] = ()
    tasks: Sequence[Task] = ()  # long-running; cancelled on shutdown


@dataclass
class Service:
    name: str
    settings: ServiceSettings
    port: int
    app: FastAPI
    wire: Callable[[Runtime], Wiring]
    migrations: Sequence[Migration] = ()
    max_body: int | None = None  # request-body limit of every route without its own; default DPM_HTTP_MAX_BODY


async def serve(
    service: Service, *, tracer_provider: TracerProvider | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run ``service`` until SIGTERM/SIGINT (or ``stop`` is set), then drain and close."""
    settings = service.settings
    provider = tracer_provider or make_tracer_provider(service.name)
    tracer = provider.get_tracer("dpm")
    health = Health(service.name)
    app = service.app
    app.state.health = health
    app.include_router(health_router())
    install_error_handler(app)
    app.add_middleware(TracingMiddleware, tracer=tracer)
    app.add_middleware(TextGuard)  # inside BodyLimit: it reads the body after routing, under the route's limit
    app.add_middleware(BodyLimit, limit=service.max_body or settings.http_max_body)

    if stop is None:  # a process of its own: signals stop it (an embedding caller passes ``stop``)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)

    sock = bind(service.name, settings.http_host, service.port)
    server = make_server(app)
    server_task = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("%s listening on http://%s:%d", service.name, settings.http_host, service.port)
    main = asyncio.create_task(_run(service, tracer, health, stop))
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if main in done:
            main.result()
            return
        log.info("%s stopping: draining", service.name)
        if health.runtime is None:  # still starting: nothing to drain
            main.cancel()
        else:
            done, _ = await asyncio.wait({main}, timeout=settings.shutdown_grace)
            if not done:
                log.warning("%s: drain exceeded %.0f s; cancelling", service.name, settings.shutdown_grace)
                main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await main
    finally:
        stopper.cancel()
        await stop_server(server, server_task)
        sock.close()
        provider.shutdown()
        log.info("%s stopped", service.name)


async def _run(service: Service, tracer: trace.Tracer, health: Health, stop: asyncio.Event) -> None:
    settings = service.settings
    async with contextlib.AsyncExitStack() as stack:

        def waiting(dep: str) -> Callable[[BaseException], None]:
            return lambda exc: health.waiting.__setitem__(dep, f"waiting: {exc!r}"[:300])

        await wait_for_dependency(
            lambda: _migrate(settings, list(service.migrations)),
            what="postgres",
            target=_redact(settings.admin_url),
            logger=log,
            on_failure=waiting("postgres"),
        )
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            settings.database_url.get_secret_value(),
            open=False,
            min_size=1,
            max_size=settings.db_pool_max,
            name=service.name,
            reconnect_timeout=10**9,
            check=AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True},  # transactions are explicit (conn.transaction()) everywhere
        )
        await wait_for_dependency(
            lambda: pool.open(wait=True, timeout=5),
            what="postgres",
            target=_redact(settings.database_url.get_secret_value()),
            logger=log,
            on_failure=waiting("postgres"),
        )
        stack.push_async_callback(pool.close)
        health.waiting["postgres"] = "ok"
        nc = await connect_nats(
            settings.nats_url,
            name=f"dpm-{service.name}",
            on_failure=waiting("nats"),
            user=settings.nats_user,
            password=settings.nats_secret,
        )
        stack.push_async_callback(_close_nats, nc)
        js = nc.jetstream()
        await _events_stream(settings, js, waiting("nats"))
        health.waiting["nats"] = "ok"

        rt = Runtime(service.name, settings, pool, nc, js, EventLog(pool), tracer, stop)
        service.app.state.runtime = rt
        wiring = service.wire(rt)
        async with pool.connection() as conn, conn.transaction():
            for statement in wiring.ddl:
                await conn.execute(statement.encode())
        for spec in wiring.consumers:
            runner = ConsumerRunner(spec, js=js, pool=pool, tracer=tracer)
            await runner.declare()
            rt.consumers[spec.durable] = runner
        for projection in wiring.projections:
            prunner = ProjectionRunner(projection, pool=pool, eventlog=rt.eventlog)
            await prunner.setup()
            rt.projections[projection.name] = prunner
        if settings.relay_enabled:
            rt.relay = Relay(conninfo=settings.database_url.get_secret_value(), js=js, tracer=tracer)
        health.runtime = rt
        log.info("%s ready", service.name)

        cancellable: list[asyncio.Task[None]] = []
        async with asyncio.TaskGroup() as tg:
            for crunner in rt.consumers.values():
                tg.create_task(crunner.run(stop))
            for prunner in rt.projections.values():
                tg.create_task(prunner.run(stop))
            if rt.relay is not None:
                cancellable.append(tg.create_task(rt.relay.run()))
            for task in wiring.tasks:
                cancellable.append(tg.create_task(task(rt)))
            await stop.wait()
            for t in cancellable:
                t.cancel()


async def _events_stream(
    settings: ServiceSettings, js: JetStreamContext, on_failure: Callable[[BaseException], None]
) -> None:
    """A relaying service declares the events stream; one with its own NATS user and no relay may
    not (only the relay's user may create or change it), so it waits until the stream exists. Without
    a NATS user the server has no permissions to keep, and the service declares it as before."""
    if settings.relay_enabled or settings.nats_user is None:
        await ensure_events_stream(js)
    else:
        await await_events_stream(js, on_failure=on_failure)


async def _migrate(settings: ServiceSettings, migrations: list[Migration]) -> None:
    """Apply migrations with the owner URL; a service given none (least privilege) only waits for them."""
    if settings.database_admin_url is None:
        await await_migrated(settings.database_url.get_secret_value(), migrations)
    else:
        await migrate(settings.admin_url, migrations)


async def _close_nats(nc: NATS) -> None:
    """Drain (flush what is pending), then close. nats-py's drain can surface an internal
    CancelledError; swallow it unless this task itself is being cancelled."""
    for step in (nc.drain, nc.close):
        try:
            await step()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception as exc:
            log.debug("closing nats: %r", exc)


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"


def run(service: Service) -> None:
    """Process entry point: serve, and turn a catalogued error into one clear line and exit code 2."""
    setup_logging(service.name, service.settings.log_level)
    try:
        asyncio.run(serve(service))
    except (DpmError, BaseExceptionGroup) as raised:
        exc = _catalogued(raised)
        if exc is None:
            raise
        log.error("%s: %s %s -- %s", service.name, exc.code, exc.message, exc.remedy, extra={"code": exc.code})
        sys.exit(2)


def _catalogued(raised: BaseException) -> DpmError | None:
    """The catalogued error behind a failure, also when a task group wrapped it."""
    if isinstance(raised, DpmError):
        return raised
    if isinstance(raised, BaseExceptionGroup):
        for inner in raised.exceptions:
            if found := _catalogued(inner):
                return found
    return None
