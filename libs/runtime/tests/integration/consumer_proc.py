"""A consumer process for the delivery tests: records every Probe it handles in ``effects``.

Run as ``python consumer_proc.py DURABLE ACK_WAIT`` with DPM_DATABASE_URL and DPM_NATS_URL set.
``effects`` has no unique key on purpose: a double effect would show up as a duplicate row.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import nats
from opentelemetry.sdk.trace import TracerProvider
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.bus import ensure_events_stream
from dpm_runtime.consumer import ConsumerRunner, ConsumerSpec
from dpm_schemas.events import Probe


async def record(rec, conn) -> None:
    await conn.execute(
        "INSERT INTO effects (position, event_id, pid) VALUES (%s, %s, %s)", (rec.position, rec.event_id, os.getpid())
    )


async def main(durable: str, ack_wait: float) -> None:
    pool = AsyncConnectionPool(os.environ["DPM_DATABASE_URL"], min_size=1, max_size=4, open=False)
    await pool.open(wait=True)
    nc = await nats.connect(os.environ["DPM_NATS_URL"])
    await ensure_events_stream(nc.jetstream())
    spec = ConsumerSpec(durable=durable, handlers={Probe: record}, ack_wait=ack_wait, batch_size=25)
    runner = ConsumerRunner(spec, js=nc.jetstream(), pool=pool, tracer=TracerProvider().get_tracer("t"))
    await runner.declare()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("consuming", flush=True)
    await runner.run(stop)
    await nc.close()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
