"""Pruning ``dpm_tracking``: the rows that make a redelivered message a no-op, kept while a delivery
of that event can still come.

A consumer inserts one row per handled message (consumer.py); without pruning the table grows with
the log, forever. A row may go when no copy of its event can reach the consumer any more:

- JetStream keeps every message for the stream's ``max_age`` (LIMITS retention, acked or not), and a
  durable that is deleted and declared again (``DeliverPolicy.ALL``) is handed all of them again. A
  message handled at ``t`` was in the stream at ``t``, so it is gone by ``t + max_age``.
- The relay re-publishes what it published but had not checkpointed when it stopped; that copy is
  deduplicated only within ``duplicate_window``. Only positions above the relay's checkpoint can be
  re-published, so their rows stay whatever their age.
- Redeliveries of unacked messages (``ack_wait`` x ``max_deliver``) are minutes: far inside both.

So a row goes when it is older than ``max(retention, max_age + duplicate_window)`` and its position
is at or below the relay's checkpoint. ``retention`` (DPM_TRACKING_RETENTION_DAYS) only lengthens that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.eventlog import Conn
from dpm_runtime.relay import CHECKPOINT as RELAY_CHECKPOINT
from dpm_runtime.wake import idle
from dpm_schemas import subjects

log = logging.getLogger(__name__)

BATCH = 10_000  # rows per DELETE: short transactions, no long lock on a large table


@dataclass(frozen=True)
class Horizon:
    """How long JetStream may still hand a consumer a copy of an event it handled (seconds)."""

    max_age: float
    duplicate_window: float

    def keep(self, retention: float) -> float:
        return max(retention, self.max_age + self.duplicate_window)


async def stream_horizon(js: JetStreamContext) -> Horizon:
    config = (await js.stream_info(subjects.EVENTS_STREAM)).config
    if not config.max_age:  # unlimited: a recreated durable could be handed anything, ever
        return Horizon(max_age=float("inf"), duplicate_window=config.duplicate_window or 0.0)
    return Horizon(max_age=float(config.max_age), duplicate_window=float(config.duplicate_window or 0.0))


async def prune(conn: Conn, consumers: Sequence[str], *, keep: float) -> int:
    """Delete the tracking rows of ``consumers`` older than ``keep`` seconds at or below the relay's
    checkpoint; the number deleted."""
    if not consumers or keep == float("inf"):
        return 0
    deleted = 0
    while True:
        cur = await conn.execute(
            "DELETE FROM dpm_tracking WHERE ctid = ANY(ARRAY(SELECT ctid FROM dpm_tracking"
            " WHERE consumer = ANY(%s) AND handled_at < now() - make_interval(secs => %s)"
            " AND position <= (SELECT coalesce(max(position), 0) FROM dpm_checkpoints WHERE name = %s)"
            " LIMIT %s))",
            (list(consumers), keep, RELAY_CHECKPOINT, BATCH),
        )
        deleted += cur.rowcount
        if cur.rowcount < BATCH:
            return deleted


async def prune_forever(
    stop: asyncio.Event,
    *,
    pool: AsyncConnectionPool[Conn],
    js: JetStreamContext,
    consumers: Sequence[str],
    retention: float,
    interval: float,
) -> None:
    """Prune the rows of this service's consumers every ``interval`` seconds (first after one
    interval); a round that cannot read the stream's limits prunes nothing."""
    while not stop.is_set():
        await idle(interval, stop)
        if stop.is_set():
            return
        try:
            horizon = await stream_horizon(js)
            async with pool.connection() as conn:
                deleted = await prune(conn, consumers, keep=horizon.keep(retention))
            if deleted:
                log.info("pruned %d tracking rows older than %.0f s", deleted, horizon.keep(retention))
        except Exception as exc:
            log.warning("pruning dpm_tracking: %r; next round in %.0f s", exc, interval)
