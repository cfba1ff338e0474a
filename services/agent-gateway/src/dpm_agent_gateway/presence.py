"""Presence: heartbeats stay in memory; only transitions reach the log. A machine is online from its
agent's hello until it has been silent for the heartbeat timeout -- a dropped connection that comes
back within the timeout causes no flapping, a killed agent goes offline one timeout after its last
heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

from dpm_agent_gateway import store
from dpm_runtime.eventlog import Conn, EventLog
from dpm_schemas.agent_protocol import Hello, Inventory
from dpm_schemas.events import InventoryReported, MachineAddressesChanged, MachineCameOnline, MachineWentOffline

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]


class Presence:
    def __init__(
        self,
        *,
        pool: AsyncConnectionPool[Conn],
        eventlog: EventLog,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._log = eventlog
        self.timeout = timeout
        self._clock = clock
        self.last_seen: dict[uuid.UUID, float] = {}
        self.connections: dict[uuid.UUID, Closer] = {}

    async def resume(self) -> None:
        """After a restart, machines recorded online get one timeout to reconnect."""
        async with self._pool.connection() as conn:
            for machine_id in await store.online_machines(conn):
                self.last_seen.setdefault(machine_id, self._clock())

    async def hello(self, machine_id: uuid.UUID, hello: Hello, close: Closer) -> None:
        self.last_seen[machine_id] = self._clock()
        self.connections[machine_id] = close
        async with self._pool.connection() as conn, conn.transaction():
            online, ips, _digest = await store.locked_presence(conn, machine_id)
            if not online:
                await store.record(
                    self._log,
                    conn,
                    machine_id,
                    MachineCameOnline(machine_id=machine_id, agent_version=hello.agent_version),
                    online=True,
                    agent_version=hello.agent_version,
                )
            await self._addresses(conn, machine_id, hello.facts.ips, ips)

    def heartbeat(self, machine_id: uuid.UUID) -> None:
        self.last_seen[machine_id] = self._clock()

    def disconnected(self, machine_id: uuid.UUID, close: Closer) -> None:
        if self.connections.get(machine_id) is close:
            del self.connections[machine_id]

    async def addresses(self, machine_id: uuid.UUID, ips: tuple[str, ...]) -> None:
        self.heartbeat(machine_id)
        async with self._pool.connection() as conn, conn.transaction():
            _online, known, _digest = await store.locked_presence(conn, machine_id)
            await self._addresses(conn, machine_id, ips, known)

    async def _addresses(self, conn: Conn, machine_id: uuid.UUID, ips: tuple[str, ...], known: list[str]) -> None:
        if sorted(ips) != sorted(known):
            await store.record(
                self._log, conn, machine_id, MachineAddressesChanged(machine_id=machine_id, ips=ips), ips=list(ips)
            )

    async def inventory(self, machine_id: uuid.UUID, inv: Inventory) -> None:
        self.heartbeat(machine_id)
        async with self._pool.connection() as conn, conn.transaction():
            _online, _ips, digest = await store.locked_presence(conn, machine_id)
            if digest != inv.digest:
                event = InventoryReported(
                    machine_id=machine_id,
                    os=inv.os,
                    kernel=inv.kernel,
                    packages=tuple(sorted(inv.packages)),
                    digest=inv.digest,
                )
                await store.record(self._log, conn, machine_id, event, inventory_digest=inv.digest)

    async def sweep(self) -> int:
        """Mark offline every machine silent for longer than the timeout; returns how many."""
        now = self._clock()
        silent = [m for m, seen in self.last_seen.items() if now - seen > self.timeout]
        for machine_id in silent:
            if now - self.last_seen.get(machine_id, now) <= self.timeout:
                continue  # a heartbeat arrived meanwhile
            del self.last_seen[machine_id]
            async with self._pool.connection() as conn, conn.transaction():
                online, _ips, _digest = await store.locked_presence(conn, machine_id)
                if online:
                    reason = f"no heartbeat for {self.timeout:g} s"
                    await store.record(
                        self._log,
                        conn,
                        machine_id,
                        MachineWentOffline(machine_id=machine_id, reason=reason),
                        online=False,
                    )
            if close := self.connections.pop(machine_id, None):
                with contextlib.suppress(Exception):
                    await close()
        return len(silent)

    async def run(self, stop: asyncio.Event) -> None:
        await self.resume()
        period = min(1.0, self.timeout / 4)
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:  # the database may blip; presence resumes on the next sweep
                log.warning("presence sweep failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
