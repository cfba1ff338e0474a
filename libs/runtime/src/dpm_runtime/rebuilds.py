"""Rebuild requests: an admin asks the api to rebuild another service's projection, and the service
that owns the code carries it out.

The api writes a row in ``dpm_rebuild_requests`` (pending) and notifies ``dpm_rebuilds`` in the same
transaction; every replica of the owner is woken (``wake.Waker``, else its poll), and the one that
takes the projection's rebuild lock first marks it running, rebuilds, and records the figures (done)
or the error (failed). A request whose service is down stays pending, visible in
``GET /admin/rebuilds/{id}``; one left running by a replica that died (nobody holds its lock) is
failed as interrupted, so it can be asked again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from dpm_runtime.eventlog import Conn, EventLog
from dpm_runtime.projection import ProjectionRunner
from dpm_runtime.rebuild import RebuildResult, rebuild_lock, rebuild_locked
from dpm_runtime.wake import REBUILDS, idle
from dpm_schemas import E
from dpm_schemas.errors import DpmError

log = logging.getLogger(__name__)

OPEN = ("pending", "running")


@dataclass(frozen=True)
class Request:
    id: uuid.UUID
    projection: str
    service: str
    status: str  # pending, running, done, failed
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events: int | None
    position: int | None
    seconds: float | None
    quarantined: int | None
    error: str | None


_COLUMNS = (
    "id, projection, service, status, requested_by, requested_at, started_at, finished_at,"
    " events, position, seconds, quarantined, error"
)


async def ask(conn: Conn, projection: str, service: str, requested_by: str) -> Request:
    """Record a request for ``service`` to rebuild ``projection`` (full name) and wake it; while one
    is open for the projection, that one is returned instead of a second."""
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO dpm_rebuild_requests (id, projection, service, requested_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (projection) WHERE status IN ('pending', 'running') DO NOTHING RETURNING id",
            (uuid.uuid4(), projection, service, requested_by),
        )
        if await cur.fetchone() is not None:
            await conn.execute("SELECT pg_notify(%s, %s)", (REBUILDS, service))
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM dpm_rebuild_requests WHERE projection = %s AND status = ANY(%s)",
            (projection, list(OPEN)),
        )
        row = await cur.fetchone()
    if row is None:  # it finished between the two statements: ask again
        return await ask(conn, projection, service, requested_by)
    return Request(*row)


async def get(conn: Conn, request_id: uuid.UUID) -> Request:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM dpm_rebuild_requests WHERE id = %s", (request_id,))
    row = await cur.fetchone()
    if row is None:
        raise E.REBUILD_REQUEST_NOT_FOUND(id=request_id)
    return Request(*row)


class RebuildWorker:
    """Carries out the rebuild requests addressed to one service (any of its replicas)."""

    def __init__(
        self,
        service: str,
        runners: Mapping[str, ProjectionRunner],
        *,
        pool: AsyncConnectionPool[Conn],
        eventlog: EventLog,
        wake: asyncio.Event | None = None,
        poll: float = 5.0,
    ) -> None:
        self._service = service
        self._runners = {r.projection.name: r for r in runners.values()}
        self._pool = pool
        self._eventlog = eventlog
        self._wake = wake
        self._poll = poll

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._wake is not None:
                self._wake.clear()
            try:
                await self.serve()
            except Exception as exc:
                log.warning("%s: rebuild requests: %r; retrying", self._service, exc)
            await idle(self._poll, stop, *([self._wake] if self._wake else []))

    async def serve(self) -> int:
        """Take every open request of this service whose rebuild lock is free; the number carried out."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, projection FROM dpm_rebuild_requests WHERE service = %s AND status = ANY(%s)"
                " ORDER BY requested_at",
                (self._service, list(OPEN)),
            )
            found = await cur.fetchall()
        done = 0
        for request_id, projection in found:
            try:
                async with self._pool.connection() as conn, rebuild_lock(conn, projection):
                    done += await self._carry_out(conn, request_id, projection)
            except DpmError as exc:
                if exc.error is not E.REBUILD_RUNNING:
                    raise
                # another replica holds the lock: it is on this request (or another of the projection)
        return done

    async def _carry_out(self, conn: Conn, request_id: uuid.UUID, projection: str) -> int:
        """Holding the projection's rebuild lock: run a pending request, fail one left running."""
        async with conn.transaction():
            cur = await conn.execute("SELECT status FROM dpm_rebuild_requests WHERE id = %s FOR UPDATE", (request_id,))
            row = await cur.fetchone()
            if row is None or row[0] not in OPEN:
                return 0  # finished by another replica meanwhile
            if row[0] == "running":  # its runner died: nobody held the lock
                await _finish(conn, request_id, None, "interrupted: the service stopped during the rebuild")
                return 0
            runner = self._runners.get(projection)
            if runner is None:
                known = ", ".join(sorted(self._runners))
                await _finish(conn, request_id, None, E.UNKNOWN_PROJECTION(name=projection, known=known).message)
                return 0
            await conn.execute(
                "UPDATE dpm_rebuild_requests SET status = 'running', started_at = now() WHERE id = %s", (request_id,)
            )
        log.info("%s: rebuilding %s as requested (%s)", self._service, projection, request_id)
        try:
            result = await rebuild_locked(runner.projection, conn, pool=self._pool, eventlog=self._eventlog)
        except Exception as exc:
            log.exception("%s: requested rebuild of %s failed", self._service, projection)
            await _finish(conn, request_id, None, f"{type(exc).__name__}: {exc}"[:500])
            return 0
        await _finish(conn, request_id, result, None)
        await runner.refresh_quarantined()
        return 1


async def _finish(conn: Conn, request_id: uuid.UUID, result: RebuildResult | None, error: str | None) -> None:
    figures = (
        (None, None, None, None)
        if result is None
        else (
            result.events,
            result.position,
            result.seconds,
            result.quarantined,
        )
    )
    await conn.execute(
        "UPDATE dpm_rebuild_requests SET status = %s, finished_at = now(), events = %s, position = %s,"
        " seconds = %s, quarantined = %s, error = %s WHERE id = %s",
        ("failed" if result is None else "done", *figures, error, request_id),
    )
