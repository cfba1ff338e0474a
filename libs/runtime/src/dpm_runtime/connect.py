"""A service's connections at start-up: PostgreSQL (migrated) and NATS, each waited for with logged
retries while /readyz says why; and their orderly close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.bus import await_events_stream, connect_nats, ensure_events_stream
from dpm_runtime.eventlog import Conn
from dpm_runtime.http import Health
from dpm_runtime.migrations import Migration, await_migrated, migrate
from dpm_runtime.retry import wait_for_dependency
from dpm_runtime.settings import ServiceSettings
from dpm_runtime.unavailable import Pool

log = logging.getLogger(__name__)


def _waiting(health: Health, dep: str) -> Callable[[BaseException], None]:
    return lambda exc: health.waiting.__setitem__(dep, f"waiting: {exc!r}"[:300])


async def connect_postgres(
    name: str, settings: ServiceSettings, migrations: list[Migration], health: Health, stack: contextlib.AsyncExitStack
) -> AsyncConnectionPool[Conn]:
    """Wait for PostgreSQL and the migrations, then open the pool (closed by ``stack``)."""
    await wait_for_dependency(
        lambda: _migrate(settings, migrations),
        what="postgres",
        target=redact(settings.admin_url),
        logger=log,
        on_failure=_waiting(health, "postgres"),
    )
    pool: AsyncConnectionPool[Conn] = Pool(  # a request's checkout waits less: dpm_runtime.unavailable
        settings.database_url.get_secret_value(),
        open=False,
        min_size=1,
        max_size=settings.db_pool_max,
        timeout=settings.db_checkout_timeout,
        name=name,
        # psycopg_pool doubles the wait between reconnection attempts without a cap (1, 2, 4 ... 64 s):
        # after a 45 s outage the pool came back 20 s after PostgreSQL. An attempt that gives up after
        # 10 s lets the next checkout start a new one from 1 s, so it is back within seconds of it.
        reconnect_timeout=10,
        check=AsyncConnectionPool.check_connection,
        kwargs={"autocommit": True},  # transactions are explicit (conn.transaction()) everywhere
    )
    await wait_for_dependency(
        lambda: pool.open(wait=True, timeout=5),
        what="postgres",
        target=redact(settings.database_url.get_secret_value()),
        logger=log,
        on_failure=_waiting(health, "postgres"),
    )
    stack.push_async_callback(pool.close)
    health.waiting["postgres"] = "ok"
    return pool


async def connect_bus(
    name: str, settings: ServiceSettings, health: Health, stack: contextlib.AsyncExitStack
) -> tuple[NATS, JetStreamContext]:
    """Connect to NATS and wait for the events stream (closed, drained, by ``stack``)."""
    nc = await connect_nats(
        settings.nats_url,
        name=f"dpm-{name}",
        on_failure=_waiting(health, "nats"),
        user=settings.nats_user,
        password=settings.nats_secret,
    )
    stack.push_async_callback(_close_nats, nc)
    js = nc.jetstream()
    await _events_stream(settings, js, _waiting(health, "nats"))
    health.waiting["nats"] = "ok"
    return nc, js


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


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
