"""The service kernel: one lifecycle for every dpm service.

``serve(service)``: bind the HTTP port (clear error if taken) and answer /healthz at once; wait for
PostgreSQL (applying migrations) and NATS with logged retries while /readyz says why; declare the
stream, consumers and projections; run them in one task group with the relay on standby. SIGTERM
or SIGINT drains in order: the HTTP server stops accepting and finishes the requests in flight (they
still have the pool and NATS), then consumers finish the message in hand and projections and tasks
stop, then NATS and the pool close.
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

from dpm_runtime import wake
from dpm_runtime.connect import connect_bus, connect_postgres
from dpm_runtime.consumer import ConsumerRunner, ConsumerSpec
from dpm_runtime.eventlog import Conn, EventLog
from dpm_runtime.http import BodyLimit, Health, bind, health_router, install_error_handler, make_server, stop_server
from dpm_runtime.logs import setup_logging
from dpm_runtime.migrations import Migration
from dpm_runtime.projection import Projection, ProjectionRunner
from dpm_runtime.rebuilds import RebuildWorker
from dpm_runtime.registry import Qualified
from dpm_runtime.relay import Relay
from dpm_runtime.settings import ServiceSettings
from dpm_runtime.telemetry import TracingMiddleware, make_tracer_provider
from dpm_runtime.textguard import TextGuard
from dpm_runtime.tracking import prune_forever
from dpm_runtime.unavailable import RequestCheckout, install_unavailable_handler
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
    stop: asyncio.Event  # set once HTTP has drained: consumers, projections and tasks wind down
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set when stopping starts (streams end)
    projections: dict[str, ProjectionRunner] = field(default_factory=dict)
    consumers: dict[str, ConsumerRunner] = field(default_factory=dict)
    relay: Relay | None = None
    waker: wake.Waker | None = None  # the LISTEN connection that wakes the projections
    rebuilds: RebuildWorker | None = None  # carries out rebuilds other services asked of this one

    def runner(self, name: str) -> ProjectionRunner | None:
        """This service's runner of projection ``name``, by full name ("api.machines") or short one."""
        return self.projections.get(name.removeprefix(f"{self.name}."))

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
    _prepare(service, tracer, health)
    stop = stop or _signalled()
    drain = asyncio.Event()  # the runtime's own stop, set after the HTTP server drained
    sock = bind(service.name, settings.http_host, service.port)
    server = make_server(service.app, drain=settings.shutdown_grace / 2)
    server_task = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("%s listening on http://%s:%d", service.name, settings.http_host, service.port)
    try:
        main = asyncio.create_task(_run(service, tracer, health, stop, drain))
        await _until_stopped(service, main, health, stop, lambda: stop_server(server, server_task), drain)
    finally:
        await stop_server(server, server_task)
        sock.close()
        provider.shutdown()
        log.info("%s stopped", service.name)


def _prepare(service: Service, tracer: trace.Tracer, health: Health) -> None:
    """The endpoints and middleware every service has, around its own routes."""
    app = service.app
    app.state.health = health
    app.include_router(health_router())
    install_error_handler(app)
    install_unavailable_handler(app)
    app.add_middleware(TracingMiddleware, tracer=tracer)
    app.add_middleware(RequestCheckout, timeout=service.settings.db_request_timeout)
    app.add_middleware(TextGuard)  # inside BodyLimit: it reads the body after routing, under the route's limit
    app.add_middleware(BodyLimit, limit=service.max_body or service.settings.http_max_body)


def _signalled() -> asyncio.Event:
    """A process of its own: SIGTERM and SIGINT stop it (an embedding caller passes ``stop``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _until_stopped(
    service: Service, main: asyncio.Task[None], health: Health, stop: asyncio.Event,
    stop_http: Callable[[], Awaitable[None]], drain: asyncio.Event,
) -> None:  # fmt: skip
    """Wait for ``main`` to fail or ``stop``; then drain in order within the grace period: HTTP first
    (no new requests; those in flight finish with the pool and NATS still open), then ``drain`` lets
    consumers, projections and tasks wind down, and ``main`` closes the connections, else is cancelled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + service.settings.shutdown_grace
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if main in done:
            main.result()
            return
        log.info("%s stopping: draining", service.name)  # HTTP first, then consumers and projections
        await stop_http()
        drain.set()
        if health.runtime is None:  # still starting: nothing to drain
            main.cancel()
        else:
            done, _ = await asyncio.wait({main}, timeout=max(1.0, deadline - loop.time()))
            if not done:
                log.warning("%s: drain exceeded %.0f s; cancelling", service.name, service.settings.shutdown_grace)
                main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await main
    finally:
        stopper.cancel()


async def _run(
    service: Service, tracer: trace.Tracer, health: Health, closing: asyncio.Event, stop: asyncio.Event
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        pool = await connect_postgres(service.name, service.settings, list(service.migrations), health, stack)
        nc, js = await connect_bus(service.name, service.settings, health, stack)
        rt = Runtime(service.name, service.settings, pool, nc, js, EventLog(pool), tracer, stop, closing)
        service.app.state.runtime = rt
        wiring = service.wire(rt)
        await _start(rt, wiring)
        health.runtime = rt
        log.info("%s ready", service.name)
        await _supervise(rt, wiring)


async def _start(rt: Runtime, wiring: Wiring) -> None:
    """Create what the wiring declares: tables, durable consumers, projections (registered by full
    name, woken by the log's NOTIFY), the worker for rebuilds asked of this service, the relay."""
    settings = rt.settings
    async with rt.pool.connection() as conn, conn.transaction():
        for statement in wiring.ddl:
            await conn.execute(statement.encode())
    for spec in wiring.consumers:
        runner = ConsumerRunner(spec, js=rt.js, pool=rt.pool, tracer=rt.tracer)
        await runner.declare()
        rt.consumers[spec.durable] = runner
    if wiring.projections:
        await _start_projections(rt, wiring.projections)
    if settings.relay_enabled:
        rt.relay = Relay(conninfo=settings.database_url.get_secret_value(), js=rt.js, tracer=rt.tracer)


async def _start_projections(rt: Runtime, projections: Sequence[Projection]) -> None:
    """Set up each projection as "<service>.<name>" (found by its short name in ``rt.projections``),
    all woken by one LISTEN connection, and the worker for the rebuilds asked of this service."""
    poll = rt.settings.projection_poll
    rt.waker = waker = wake.Waker(rt.settings.database_url.get_secret_value(), name=rt.name)
    for projection in projections:
        runner = ProjectionRunner(
            Qualified(rt.name, projection),
            pool=rt.pool,
            eventlog=rt.eventlog,
            idle_poll=poll,
            wake=waker.subscribe(wake.EVENTS),
        )
        await runner.setup()
        rt.projections[projection.name] = runner
    rt.rebuilds = RebuildWorker(
        rt.name, rt.projections, pool=rt.pool, eventlog=rt.eventlog, wake=waker.subscribe(wake.REBUILDS), poll=poll
    )


async def _supervise(rt: Runtime, wiring: Wiring) -> None:
    """Run everything in one task group until ``stop``: consumers, projections and the workers drain
    by themselves; the relay, the LISTEN connection and the service's own tasks are cancelled."""
    stop, settings = rt.stop, rt.settings
    async with asyncio.TaskGroup() as tg:
        for crunner in rt.consumers.values():
            tg.create_task(crunner.run(stop))
        for prunner in rt.projections.values():
            tg.create_task(prunner.run(stop))
        if rt.rebuilds is not None:
            tg.create_task(rt.rebuilds.run(stop))
        if rt.consumers:
            retention, every = settings.tracking_retention_days * 86400, settings.tracking_prune_interval
            prune = prune_forever(stop, pool=rt.pool, js=rt.js, consumers=list(rt.consumers), retention=retention,
                                  interval=every)  # fmt: skip
            tg.create_task(prune)
        background = [task(rt) for task in wiring.tasks]
        background += [x.run() for x in (rt.relay, rt.waker) if x is not None]
        cancellable = [tg.create_task(coro) for coro in background]
        await stop.wait()
        for t in cancellable:
            t.cancel()


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
