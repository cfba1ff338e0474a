"""The watchdog of operators' power-ons: every power-on whose machine did not come online or
network-boot within the remote power-on timeout fails (DPM-E113; DPM-E173 when the outbox never
sent its wake-up, so the message does not blame the machine). The timeout counts from the send. The watches are durable
(``adapters/power_watch_sql.py``), so a restart loses none; the failure is appended in the
conversation and trace of the operator's request, like the rest of the power-on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.context import UnitOfWork
from dpm_runtime.eventlog import Conn, EventLog
from dpm_runtime.telemetry import context_from, current_traceparent
from dpm_scheduler.adapters.directory_sql import Directory
from dpm_scheduler.adapters.power_watch_sql import PowerWatches
from dpm_schemas import E, subjects
from dpm_schemas.events import PowerOnFailed
from dpm_schemas.ids import stream_id

ACTOR = "scheduler"


@dataclass
class PowerWatchdog:
    pool: AsyncConnectionPool[Conn]
    eventlog: EventLog
    directory: Directory
    watches: PowerWatches
    timeout: float
    clock: Callable[[], datetime]
    tracer: trace.Tracer = field(default_factory=lambda: trace.get_tracer("dpm"))

    async def expire(self) -> int:
        """Fail every power-on whose deadline passed; returns how many."""
        async with self.pool.connection() as conn, conn.transaction():
            expired = await self.watches.expired(conn, self.clock(), actor=ACTOR)
            for w in expired:
                failed_as = E.POWER_ON_FAILED if w.sent else E.WAKE_NOT_SENT  # never sent: not the machine
                err = failed_as(machine=await self.directory.name(conn, w.machine_id), timeout=round(self.timeout))
                failed = PowerOnFailed(machine_id=w.machine_id, code=err.code, reason=err.message)
                with self.tracer.start_as_current_span("power-on watchdog", context=context_from(w.cause.traceparent)):
                    ctx = UnitOfWork(conn, self.eventlog, w.cause, traceparent=current_traceparent())
                    await ctx.append(stream_id(subjects.POWER, w.machine_id), [failed])
        return len(expired)
