"""The relay: tails the event log by position and publishes every event to JetStream.

Exactly one relay is active per deployment: it holds a session-level PostgreSQL advisory lock on
its own connection, and reads, publishes and checkpoints through that same connection, so a relay
that loses its connection loses the lock and can no longer advance the checkpoint. Others stand by.
Each event is published with ``Nats-Msg-Id = event_id`` and the checkpoint advances only after
JetStream acknowledged the whole batch: a crash anywhere re-publishes (deduplicated), never loses.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from dpm_runtime.eventlog import RawEvent, read_raw
from dpm_runtime.telemetry import context_from, inject
from dpm_schemas import subjects
from dpm_schemas.codec import envelope_from_row

log = logging.getLogger(__name__)

RELAY_LOCK = 7291002
CHECKPOINT = "relay"


@dataclass
class RelayStats:
    active: bool = False
    published: int = 0
    checkpoint: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


class Relay:
    def __init__(
        self,
        *,
        conninfo: str,
        js: JetStreamContext,
        tracer: trace.Tracer,
        batch_size: int = 500,
        idle_poll: float = 0.5,
        standby_poll: float = 2.0,
    ) -> None:
        self._conninfo = conninfo
        self._js = js
        self._tracer = tracer
        self._batch_size = batch_size
        self._idle_poll = idle_poll
        self._standby_poll = standby_poll
        self.stats = RelayStats()

    async def run(self) -> None:
        """Run until cancelled: stand by until the lock is free, then publish; start over on errors."""
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.active = False
                self.stats.errors = [*self.stats.errors[-9:], repr(exc)]
                log.warning("relay interrupted, restarting: %r", exc)
                await asyncio.sleep(1.0)

    async def _run_once(self) -> None:
        # application_name names this process, so operators (and tests) see which relay holds the lock.
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=f"dpm-relay-{os.getpid()}"
        ) as conn:
            while not await _try_lock(conn):
                if not self.stats.active:
                    log.debug("relay standing by: another relay holds the lock")
                await asyncio.sleep(self._standby_poll)
            self.stats.active = True
            log.info("relay active")
            try:
                await self._pump(conn)
            finally:
                self.stats.active = False

    async def _pump(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute("LISTEN dpm_events")
        checkpoint = await _load_checkpoint(conn)
        self.stats.checkpoint = checkpoint
        while True:
            # Drop wake-ups that queued up while we were busy: the read below covers them.
            async for _ in conn.notifies(timeout=0):
                pass
            rows = await read_raw(conn, after=checkpoint, limit=self._batch_size)
            if rows:
                await self._publish(rows)
                checkpoint = rows[-1].position
                await conn.execute(
                    "INSERT INTO dpm_checkpoints (name, position) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now()",
                    (CHECKPOINT, checkpoint),
                )
                self.stats.checkpoint = checkpoint
                self.stats.batches += 1
                continue
            async for _ in conn.notifies(timeout=self._idle_poll, stop_after=1):
                pass

    async def _publish(self, rows: Sequence[RawEvent]) -> None:
        acks = [asyncio.ensure_future(self._publish_one(row)) for row in rows]
        try:
            await asyncio.gather(*acks)
        except BaseException:
            for fut in acks:
                fut.cancel()
            raise
        self.stats.published += len(rows)

    async def _publish_one(self, row: RawEvent) -> None:
        category = row.stream_id.split("-", 1)[0]
        parent = context_from(row.metadata.get("traceparent"))
        with self._tracer.start_as_current_span(
            f"publish {row.type}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={"dpm.position": row.position, "dpm.stream_id": row.stream_id},
        ):
            headers = {
                subjects.HEADER_MSG_ID: str(row.event_id),
                subjects.HEADER_POSITION: str(row.position),
                subjects.HEADER_TYPE: row.type,
            }
            inject(headers)
            body = envelope_from_row(
                event_id=row.event_id,
                wire_type=row.type,
                version=row.schema_version,
                stream_id=row.stream_id,
                stream_version=row.stream_version,
                position=row.position,
                occurred_at=row.recorded_at,
                metadata=row.metadata,
                data=row.data,
            )
            await self._js.publish(subjects.event_subject(category, row.type), body, headers=headers, timeout=10)


async def _try_lock(conn: psycopg.AsyncConnection) -> bool:
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))).fetchone()
    return bool(row and row[0])


async def _load_checkpoint(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT position FROM dpm_checkpoints WHERE name = %s", (CHECKPOINT,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _serve_standalone() -> None:
    """Run only a relay (``python -m dpm_runtime.relay``): ``dpm up`` and compose do, so that the relay's
    NATS user is the only one that may publish events (services run with ``DPM_RELAY_ENABLED=false``)."""
    import signal

    from dpm_runtime.bus import connect_nats, ensure_events_stream
    from dpm_runtime.dbroles import prepare
    from dpm_runtime.migrations import await_migrated
    from dpm_runtime.retry import wait_for_dependency
    from dpm_runtime.settings import ServiceSettings
    from dpm_runtime.telemetry import make_tracer_provider

    settings = ServiceSettings()
    if settings.database_admin_url is not None:  # compose: the relay is the one process that migrates
        # each service's schema owned by its role before the migrations (dbroles), so no service starts
        # on one it cannot write; a missing role (DPM-E421) is logged and waited for like an outage
        await wait_for_dependency(lambda: prepare(settings.admin_url), what="postgres", target="database", logger=log)
    else:  # dpm up migrates before it starts anything
        url = settings.database_url.get_secret_value()
        await wait_for_dependency(lambda: await_migrated(url), what="postgres", target="database", logger=log)
    nc = await connect_nats(settings.nats_url, name="dpm-relay", user=settings.nats_user, password=settings.nats_secret)
    js = nc.jetstream()
    await ensure_events_stream(js)
    provider = make_tracer_provider("relay")
    relay = Relay(conninfo=settings.database_url.get_secret_value(), js=js, tracer=provider.get_tracer("dpm"))
    task = asyncio.create_task(relay.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await nc.close()
        provider.shutdown()


def main() -> None:
    from dpm_runtime.logs import setup_logging

    setup_logging("relay")
    asyncio.run(_serve_standalone())


if __name__ == "__main__":
    main()
