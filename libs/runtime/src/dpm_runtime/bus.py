"""NATS JetStream: connect with retries; the relay declares the event stream, the others wait for it.

With credentials each connection takes replies on its own inbox prefix (``_INBOX.<user>``), the
only inbox its user may subscribe to: JetStream fetches and request replies arrive there, so no
other service can read them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import nats
from nats.aio.client import DEFAULT_INBOX_PREFIX
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from dpm_runtime.retry import wait_for_dependency
from dpm_schemas import E, subjects

log = logging.getLogger(__name__)


def inbox_prefix(user: str) -> str:
    """Where ``user``'s connection takes replies (``_INBOX.<user>.<id>``); nats-server lets each
    user subscribe to its own prefix only (``localstack.nats.permissions``)."""
    return f"_INBOX.{user}"


def events_stream_config(*, max_age_days: float = 30.0, replicas: int = 1) -> StreamConfig:
    """The one stream every relayed event lands in. The log is the source of truth; this is the pipe,
    so it keeps a bounded window and deduplicates republished events by ``Nats-Msg-Id``."""
    return StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=[subjects.all_events()],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age_days * 86400,
        duplicate_window=120.0,
        num_replicas=replicas,
    )


async def connect_nats(
    url: str,
    *,
    name: str,
    on_failure: Callable[[BaseException], None] | None = None,
    user: str | None = None,
    password: str | None = None,
) -> NATS:
    """Connect, waiting (and logging why) until the server answers; afterwards reconnect forever.

    ``user``/``password`` are the service's own NATS credentials (kept out of the URL, which is logged).

    nats-py itself retries the first connection when reconnects are unbounded, calling ``error_cb``
    on every failure -- so the waiting is logged from there, with the attempt count.
    """
    state = {"connected": False, "attempts": 0}

    async def error_cb(exc: Exception) -> None:
        if state["connected"]:
            log.warning("nats error: %s", exc)
            return
        state["attempts"] += 1
        if on_failure is not None:
            on_failure(exc)
        log.warning(
            "waiting for nats at %s: %s; retry %d",
            url,
            exc,
            state["attempts"],
            extra={"dependency": "nats", "target": url, "attempt": state["attempts"]},
        )

    nc = await nats.connect(
        servers=[url],
        name=name,
        user=user,
        password=password,
        inbox_prefix=inbox_prefix(user) if user else DEFAULT_INBOX_PREFIX,
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        error_cb=error_cb,
        disconnected_cb=_log_disconnected,
        reconnected_cb=_log_reconnected,
    )
    state["connected"] = True
    return nc


async def ensure_events_stream(js: JetStreamContext, config: StreamConfig | None = None) -> None:
    """Create the stream or bring its configuration up to date: the relay's job (only its NATS user may)."""
    config = config or events_stream_config()
    try:
        await js.stream_info(subjects.EVENTS_STREAM)
    except NotFoundError:
        await js.add_stream(config=config)
        log.info("created JetStream stream %s", config.name)
        return
    await js.update_stream(config=config)


async def await_events_stream(
    js: JetStreamContext, *, on_failure: Callable[[BaseException], None] | None = None
) -> None:
    """Wait, logging why, until the events stream exists (a service that does not relay may not create
    it: its NATS user has STREAM.INFO only; the relay creates it when it starts)."""

    async def exists() -> None:
        try:
            await js.stream_info(subjects.EVENTS_STREAM)
        except NotFoundError:
            raise E.EVENTS_STREAM_MISSING(stream=subjects.EVENTS_STREAM) from None

    await wait_for_dependency(
        exists, what="the events stream", target=subjects.EVENTS_STREAM, logger=log, on_failure=on_failure
    )


async def _log_disconnected() -> None:
    log.warning("disconnected from nats; reconnecting")


async def _log_reconnected() -> None:
    log.info("reconnected to nats")
