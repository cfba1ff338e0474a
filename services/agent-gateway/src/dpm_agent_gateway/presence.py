"""Presence: heartbeats count in memory and reach PostgreSQL once per flush (one statement for every
machine heard from), so the "last seen" every replica sweeps by is shared: an agent that moves to
another gateway replica stays online, and only a machine silent everywhere for the heartbeat
timeout goes offline. Only transitions reach the log. A dropped connection that comes back within
the timeout causes no flapping; a killed agent goes offline one timeout after its last heartbeat
(plus at most one flush period). Which changes are transitions is ``domain.presence``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import timedelta

from psycopg_pool import AsyncConnectionPool

from dpm_agent_gateway.adapters import store
from dpm_agent_gateway.adapters.sessions import Session, Sessions
from dpm_agent_gateway.domain import presence as rules
from dpm_agent_gateway.domain.presence import Change
from dpm_runtime.eventlog import Conn, EventLog
from dpm_schemas import agent_protocol
from dpm_schemas.agent_protocol import Hello, Inventory

log = logging.getLogger(__name__)


class Presence:
    def __init__(
        self, *, pool: AsyncConnectionPool[Conn], eventlog: EventLog, timeout: float, sessions: Sessions
    ) -> None:
        self._pool = pool
        self._log = eventlog
        self.timeout = timeout
        self.sessions = sessions
        self.heard: set[uuid.UUID] = set()  # machines heard from since the last flush
        self.agent_versions: dict[uuid.UUID, str] = {}

    @property
    def connections(self) -> dict[uuid.UUID, Session]:
        """The agents connected to this replica (one session each)."""
        return self.sessions.held

    @property
    def period(self) -> float:
        return min(1.0, self.timeout / 4)

    async def resume(self) -> None:
        """After a restart, machines recorded online get one timeout to reconnect."""
        async with self._pool.connection() as conn:
            await store.touch_online(conn)

    async def hello(self, machine_id: uuid.UUID, hello: Hello) -> None:
        """The session (already opened in ``sessions``) said hello: it is online, at these addresses.
        A hello is heard like a heartbeat: a machine back after a long silence has an old ``last_seen``
        until the next flush, and the sweep must not take it for silent."""
        self.heartbeat(machine_id)
        self.agent_versions[machine_id] = hello.agent_version
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.locked_presence(conn, machine_id)
            await store.seen(conn, [machine_id])
            said = rules.said_hello(
                machine_id, online=row.online, agent_version=hello.agent_version, known_version=row.agent_version
            )
            await self._record(conn, machine_id, said)
            await self._record(conn, machine_id, rules.addresses(machine_id, hello.facts.ips, row.ips))

    def _came_online(self, machine_id: uuid.UUID, online: bool) -> Change | None:
        return rules.came_online(machine_id, online=online, agent_version=self.agent_versions.get(machine_id, ""))

    async def _record(self, conn: Conn, machine_id: uuid.UUID, change: Change | None) -> None:
        """Append the transition and update the presence row, in the caller's transaction (if any)."""
        if change is not None:
            await store.record(self._log, conn, machine_id, change.event, **change.columns)

    def heartbeat(self, machine_id: uuid.UUID) -> None:
        self.heard.add(machine_id)

    def disconnected(self, session: Session) -> None:
        self.sessions.closed(session)

    async def addresses(self, machine_id: uuid.UUID, ips: tuple[str, ...]) -> None:
        self.heartbeat(machine_id)
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.locked_presence(conn, machine_id)
            await self._record(conn, machine_id, rules.addresses(machine_id, ips, row.ips))

    async def inventory(self, machine_id: uuid.UUID, inv: Inventory) -> None:
        self.heartbeat(machine_id)
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.locked_presence(conn, machine_id)
            await self._record(conn, machine_id, rules.inventory(machine_id, inv, row.inventory_digest))

    async def flush(self) -> int:
        """Share what this replica heard: one UPDATE for all of it. A machine heard here that the
        shared row shows offline (another replica swept it in a gap) comes online again. If the
        database cannot take it (a blip, the pool busy with a burst of hellos), what was heard is kept
        for the next round: lost, those machines would look silent to the sweep."""
        heard, self.heard = self.heard, set()
        if not heard:
            return 0
        try:
            async with self._pool.connection() as conn, conn.transaction():
                offline = await store.seen(conn, sorted(heard))
        except BaseException:
            self.heard |= heard
            raise
        for machine_id in offline:
            if machine_id in self.connections:
                async with self._pool.connection() as conn, conn.transaction():
                    row = await store.locked_presence(conn, machine_id)
                    await self._record(conn, machine_id, self._came_online(machine_id, row.online))
        return len(heard)

    async def sweep(self) -> int:
        """Mark offline every machine silent everywhere for longer than the timeout; returns how many.
        A machine heard here since the last flush is not silent, whatever its shared row says: the
        round may have waited long for a connection while its heartbeats kept arriving."""
        reason = rules.offline_reason(self.timeout)
        async with self._pool.connection() as conn, conn.transaction():
            silent = await store.lock_silent(conn, timedelta(seconds=self.timeout), heard=sorted(self.heard))
            for machine_id in silent:
                await self._record(conn, machine_id, rules.went_offline(machine_id, self.timeout))
        for machine_id in silent:
            if session := self.sessions.pop(machine_id):
                log.info("closing agent session of machine %s: %s", machine_id, reason)
                await session.end(agent_protocol.CLOSE_UNAUTHORIZED)
        return len(silent)

    async def run(self, stop: asyncio.Event) -> None:
        await self.resume()
        while not stop.is_set():
            try:
                await self.flush()
                await self.sweep()
            except Exception as exc:  # the database may blip; presence resumes on the next round
                log.warning("presence round failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period)
