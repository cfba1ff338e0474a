"""Pruning ``dpm_tracking``: a row goes once no copy of its event can reach the consumer again --
older than the retention *and* than the stream's window (max_age + duplicate window), and at or
below the relay's checkpoint -- and never a row another consumer, or a younger delivery, still needs."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NATS
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.bus import ensure_events_stream, events_stream_config
from dpm_runtime.eventlog import Conn
from dpm_runtime.relay import CHECKPOINT as RELAY
from dpm_runtime.testing import eventually
from dpm_runtime.tracking import Horizon, prune, prune_forever

pytestmark = pytest.mark.integration

DAY = 86400.0


def test_the_horizon_is_never_shorter_than_the_streams_window() -> None:
    horizon = Horizon(max_age=30 * DAY, duplicate_window=120.0)
    assert horizon.keep(7 * DAY) == 30 * DAY + 120.0  # the stream keeps the event longer than we would
    assert horizon.keep(60 * DAY) == 60 * DAY  # a longer retention only lengthens it
    assert Horizon(max_age=float("inf"), duplicate_window=0.0).keep(0.0) == float("inf")


async def _rows(pool: AsyncConnectionPool[Conn], *rows: tuple[str, int, float]) -> None:
    """Tracking rows (consumer, position, handled this many days ago)."""
    async with pool.connection() as conn:
        for consumer, position, days in rows:
            await conn.execute(
                "INSERT INTO dpm_tracking (consumer, position, handled_at)"
                " VALUES (%s, %s, now() - make_interval(secs => %s))",
                (consumer, position, days * DAY),
            )
        await conn.execute(
            "INSERT INTO dpm_checkpoints (name, position) VALUES (%s, 10)"
            " ON CONFLICT (name) DO UPDATE SET position = 10",
            (RELAY,),
        )


async def _left(pool: AsyncConnectionPool[Conn]) -> set[tuple[str, int]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT consumer, position FROM dpm_tracking")
        return {(r[0], int(r[1])) for r in await cur.fetchall()}


async def test_prune_deletes_only_old_rows_of_its_consumers_at_or_below_the_relay(pool) -> None:
    await _rows(
        pool,
        ("pxe-boot", 1, 10),  # old, relayed: goes
        ("pxe-boot", 10, 10),  # old, exactly the relay's checkpoint: goes
        ("pxe-boot", 2, 1),  # young: stays
        ("pxe-boot", 11, 10),  # above the relay's checkpoint (it may publish it again): stays
        ("scheduler-x", 3, 10),  # another service's consumer: not ours to prune
    )
    async with pool.connection() as conn:
        assert await prune(conn, ["pxe-boot"], keep=float("inf")) == 0  # an unlimited stream keeps all
        assert await prune(conn, [], keep=0) == 0
        assert await prune(conn, ["pxe-boot"], keep=7 * DAY) == 2
        assert await prune(conn, ["pxe-boot"], keep=7 * DAY) == 0  # idempotent
    assert await _left(pool) == {("pxe-boot", 2), ("pxe-boot", 11), ("scheduler-x", 3)}


async def test_prune_forever_keeps_what_the_stream_can_still_redeliver(pool, nc: NATS) -> None:
    js = nc.jetstream()
    await ensure_events_stream(js, events_stream_config(max_age_days=5))
    await _rows(pool, ("api-boot", 1, 40), ("api-boot", 2, 4.9), ("api-boot", 3, 5.1))
    stop = asyncio.Event()
    task = asyncio.create_task(
        prune_forever(stop, pool=pool, js=js, consumers=["api-boot"], retention=0.0, interval=0.05)
    )
    try:
        # retention 0, yet a row handled 4.9 days ago is still inside the stream's 5-day window
        left = await eventually(lambda: _left(pool), until=lambda rows: len(rows) == 1, what="pruned", timeout=10)
        assert left == {("api-boot", 2)}
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
