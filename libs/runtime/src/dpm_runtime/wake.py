"""Wake-ups from PostgreSQL NOTIFY: one LISTEN connection per service runtime, fanned out.

Every append notifies ``dpm_events`` at commit (sql/0001_event_log.sql), and an admin's rebuild
request notifies ``dpm_rebuilds``. Projection runners and the rebuild worker each hold an
``asyncio.Event`` from ``Waker.subscribe`` and wait on it instead of polling every 200 ms; they keep a
slow fallback poll, because a notification sent while the connection was down is lost. After every
(re)connect all subscribers are woken once, for what they may have missed.
"""

from __future__ import annotations

import asyncio
import logging
import os

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

EVENTS = "dpm_events"
REBUILDS = "dpm_rebuilds"
HEALTH_CHECK = 30.0  # seconds without a notification before the connection is probed


class Waker:
    def __init__(self, conninfo: str, *, name: str, reconnect: float = 1.0) -> None:
        self._conninfo = conninfo
        self._name = name
        self._reconnect = reconnect
        self._subscribers: dict[str, list[asyncio.Event]] = {EVENTS: [], REBUILDS: []}
        self.listening = False
        self.notified = 0

    def subscribe(self, channel: str) -> asyncio.Event:
        """An event set on every notification of ``channel``; the subscriber clears it before it works."""
        event = asyncio.Event()
        self._subscribers.setdefault(channel, []).append(event)
        return event

    def wake(self, channel: str) -> None:
        for event in self._subscribers.get(channel, ()):
            event.set()

    async def run(self) -> None:
        """LISTEN until cancelled; reconnect after errors (subscribers poll meanwhile)."""
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: LISTEN connection lost, reconnecting: %r", self._name, exc)
            self.listening = False
            await asyncio.sleep(self._reconnect)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=f"dpm-{self._name}-listen-{os.getpid()}"
        ) as conn:
            for channel in self._subscribers:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.listening = True
            for channel in self._subscribers:  # whatever was notified while we were not listening
                self.wake(channel)
            while True:
                async for note in conn.notifies(timeout=HEALTH_CHECK):
                    self.notified += 1
                    self.wake(note.channel)
                await conn.execute("SELECT 1")  # a silently dead connection raises here


async def idle(timeout: float, *events: asyncio.Event) -> None:
    """Sleep ``timeout`` seconds or until one of ``events`` is set, whichever comes first."""
    if any(e.is_set() for e in events):
        return
    if not events:
        await asyncio.sleep(timeout)
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
