"""Agent sessions: one live WebSocket per agent token (= per machine), on whichever replica.

PostgreSQL holds the truth: the machine's current token hash (and whether it is revoked) and the id
of its newest session; which held session that makes stale, and what it is told, is
``domain.sessions`` ("newest wins").

Every replica checks the sessions it holds: at once on a core NATS hint
(``subjects.agent_session_check``, sent after an enrolment or a hello commits), and every ``period``
as a backstop, so a lost hint (or a revocation, which the replica consuming it cannot announce after
its commit) delays a close by at most one period. A hint carries no authority: the database decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from dpm_agent_gateway.adapters import store
from dpm_agent_gateway.domain.sessions import Verdict, refusal, stale
from dpm_runtime.eventlog import Conn
from dpm_schemas import agent_protocol, subjects
from dpm_schemas.agent_protocol import Refused

log = logging.getLogger(__name__)

CLOSE_WAIT = 2.0  # seconds a close may take before the peer is given up on


@dataclass(eq=False)
class Session:
    """One accepted WebSocket: its machine, the hash of the token it authenticated with, and how to
    write to it (``transmit``, one frame at a time) and hang it up (``hangup``, with a close code)."""

    machine_id: uuid.UUID
    token_sha256: str
    transmit: Callable[[bytes], Awaitable[None]]
    hangup: Callable[[int], Awaitable[None]]
    session_id: uuid.UUID = field(default_factory=uuid.uuid4)
    ended: bool = False
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.transmit(data)

    async def end(self, code: int, refused: Refused | None = None) -> None:
        """Tell the agent why (if it listens within a second) and close; never raises or hangs on a dead peer."""
        self.ended = True
        with contextlib.suppress(Exception):
            if refused is not None:
                async with asyncio.timeout(1.0):
                    await self.send(agent_protocol.encode(refused))
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT):
                await self.hangup(code)


class Sessions:
    def __init__(self, *, pool: AsyncConnectionPool[Conn], nc: NATS, period: float) -> None:
        self._pool = pool
        self._nc = nc
        self.period = period
        self.held: dict[uuid.UUID, Session] = {}  # the live session of each machine connected here
        self._opening = asyncio.Lock()

    async def open(self, session: Session) -> None:
        """Record ``session`` as its machine's newest (committed before anyone is told), take over
        from an older one held here, and hint the other replicas."""
        async with self._opening:  # two hellos of one machine here: the one committed last is held
            async with self._pool.connection() as conn, conn.transaction():
                await store.open_session(conn, session.machine_id, session.session_id)
            previous, self.held[session.machine_id] = self.held.get(session.machine_id), session
        if previous is not None:
            await self._close(previous, Verdict.REPLACED)
        await self.hint(session.machine_id)

    def closed(self, session: Session) -> None:
        if self.held.get(session.machine_id) is session:
            del self.held[session.machine_id]

    def pop(self, machine_id: uuid.UUID) -> Session | None:
        return self.held.pop(machine_id, None)

    async def hint(self, machine_id: uuid.UUID) -> None:
        """Ask every replica to check its sessions of this machine (best effort: the sweep backs it up)."""
        try:
            await self._nc.publish(subjects.agent_session_check(machine_id), b"")
        except Exception as exc:
            log.warning("could not announce a session change of machine %s: %r", machine_id, exc)

    async def check(self, machine_ids: Iterable[uuid.UUID] | None = None) -> int:
        """Close the held sessions (of these machines, default all) the database says are stale."""
        held = list(self.held.values()) if machine_ids is None else [s for m in machine_ids if (s := self.held.get(m))]
        if not held:
            return 0
        async with self._pool.connection() as conn:
            return await self.check_in(conn, [s.machine_id for s in held])

    async def check_in(self, conn: Conn, machine_ids: list[uuid.UUID]) -> int:
        """``check`` by what ``conn`` sees (a consumer's transaction sees its own change)."""
        held = [s for m in machine_ids if (s := self.held.get(m))]
        doomed = stale(held, await store.session_truth(conn, machine_ids)) if held else []
        for session, verdict in doomed:
            await self._close(session, verdict)
        return len(doomed)

    async def _close(self, session: Session, verdict: Verdict) -> None:
        self.closed(session)
        code, refused = refusal(session.machine_id, verdict)
        log.warning("closing agent session of machine %s: %s (%s)", session.machine_id, verdict.value, refused.code)
        await session.end(code, refused)

    async def _hinted(self, msg: Msg) -> None:
        with contextlib.suppress(ValueError):
            machine_id = uuid.UUID(msg.subject.rsplit(".", 1)[-1])
            if machine_id in self.held:
                try:
                    await self.check([machine_id])
                except Exception as exc:  # the periodic check retries
                    log.warning("session check of machine %s failed: %r", machine_id, exc)

    async def run(self, stop: asyncio.Event) -> None:
        subscription = await self._nc.subscribe(subjects.agent_session_check(), cb=self._hinted)
        try:
            while not stop.is_set():
                try:
                    await self.check()
                except Exception as exc:  # the database may blip; the next round checks again
                    log.warning("session check failed: %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.period)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
