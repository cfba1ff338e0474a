"""The TFTP request port as an asyncio protocol: its datagrams queue for the one coroutine that reads
them (``TftpServer.serve``); the transfers themselves run on blocking sockets in threads."""

from __future__ import annotations

import asyncio
from collections import deque

Address = tuple[str, int]


class Inbox(asyncio.DatagramProtocol):
    """Datagrams for one socket, for the coroutine that owns it. ``get`` waits on one future with a
    timer instead of ``wait_for`` (a task per call): in lockstep TFTP that is once per block."""

    def __init__(self) -> None:
        self.pending: deque[tuple[bytes, Address]] = deque()
        self.transport: asyncio.DatagramTransport | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.pending.append((data, addr))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self, timeout: float) -> tuple[bytes, Address] | None:
        """The next datagram, or None after ``timeout`` seconds without one."""
        if not self.pending:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.pending.popleft() if self.pending else None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
