"""A read-only TFTP server on asyncio: each transfer gets its own socket (a new TID, RFC 1350 §4),
negotiates options (OACK), sends a window of blocks (RFC 7440), retransmits on silence and gives up
after a few tries. Every ignored packet is logged with its reason."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dpm_pxe.tftp import protocol as p
from dpm_pxe.tftp.files import Refused, resolve

log = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(frozen=True)
class TftpLimits:
    max_blksize: int = 1468  # fits an Ethernet frame without IP fragmentation
    max_window: int = 64
    timeout: float = 1.0  # seconds before a retransmission (unless the client asked for another)
    retries: int = 5
    max_transfers: int = 512


class _Inbox(asyncio.DatagramProtocol):
    """Datagrams for one socket, queued for the coroutine that owns it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.queue.put_nowait((data, addr))


class TftpServer:
    def __init__(
        self,
        root: Path,
        *,
        limits: TftpLimits | None = None,
        on_transfer: Callable[[str, Address, int], None] | None = None,
    ) -> None:
        self.root = root
        self.limits = limits or TftpLimits()
        self._on_transfer = on_transfer
        self._slots = asyncio.Semaphore(self.limits.max_transfers)
        self.transfers: set[asyncio.Task[None]] = set()

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        transport, inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=(host, port))
        log.info("tftp listening on %s:%d, root %s", host, port, self.root)
        try:
            while not stop.is_set():
                try:
                    data, peer = await asyncio.wait_for(inbox.queue.get(), 0.5)
                except TimeoutError:
                    continue
                self._dispatch(data, peer, host, transport)
        finally:
            transport.close()
            for task in list(self.transfers):
                task.cancel()
            await asyncio.gather(*self.transfers, return_exceptions=True)

    def _dispatch(self, data: bytes, peer: Address, host: str, transport: asyncio.DatagramTransport) -> None:
        try:
            packet = p.parse(data)
        except p.Malformed as exc:
            log.info("Ignoring packet from %s:%d: %s", *peer, exc)
            return
        if not isinstance(packet, p.Request):
            log.info("Ignoring packet from %s:%d: %s on the request port", *peer, type(packet).__name__)
            return
        if packet.opcode == p.WRQ:
            transport.sendto(p.error(p.E_ACCESS, "this server is read-only"), peer)
            return
        task = asyncio.create_task(self._transfer(packet, peer, host))
        self.transfers.add(task)
        task.add_done_callback(self.transfers.discard)

    async def _transfer(self, req: p.Request, peer: Address, host: str) -> None:
        loop = asyncio.get_running_loop()
        transport, inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=(host, 0), family=socket.AF_INET)
        try:
            async with self._slots:
                try:
                    path = resolve(self.root, req.filename)
                except Refused as exc:
                    log.info("tftp %s:%d %s refused: %s", *peer, req.filename, exc)
                    transport.sendto(p.error(exc.code, str(exc)), peer)
                    return
                sent = await self._send_file(path, req, peer, transport, inbox)
                if self._on_transfer and sent is not None:
                    self._on_transfer(req.filename, peer, sent)
        finally:
            transport.close()

    async def _send_file(
        self, path: Path, req: p.Request, peer: Address, transport: asyncio.DatagramTransport, inbox: _Inbox
    ) -> int | None:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            t = p.negotiate(
                req.options,
                file_size=size,
                max_blksize=self.limits.max_blksize,
                max_window=self.limits.max_window,
                default_timeout=self.limits.timeout,
            )
            if (
                t.accepted
                and await self._exchange(transport, inbox, peer, [p.oack(t.accepted)], 0, t, oack=True) is None
            ):
                return None
            last_block = size // t.blksize + 1  # a final short (possibly empty) block ends the transfer
            acked = 0
            while acked < last_block:
                window = []
                for block in range(acked + 1, min(acked + t.windowsize, last_block) + 1):
                    f.seek((block - 1) * t.blksize)
                    window.append(p.data(block, f.read(t.blksize)))
                got = await self._exchange(transport, inbox, peer, window, acked, t)
                if got is None:
                    return None
                acked = got
            return size

    async def _exchange(
        self,
        transport: asyncio.DatagramTransport,
        inbox: _Inbox,
        peer: Address,
        packets: list[bytes],
        base: int,
        t: p.Transfer,
        *,
        oack: bool = False,
    ) -> int | None:
        """Send ``packets`` (blocks base+1.., or an OACK) and return the highest block acknowledged;
        a partial ACK ends the window early (RFC 7440 §4); duplicate ACKs are ignored, which avoids the
        Sorcerer's Apprentice problem. None when the client aborts or stays silent through every retry."""
        loop = asyncio.get_running_loop()
        for _attempt in range(self.limits.retries + 1):
            for packet in packets:
                transport.sendto(packet, peer)
            deadline = loop.time() + t.timeout
            while (remaining := deadline - loop.time()) > 0:
                try:
                    data, addr = await asyncio.wait_for(inbox.queue.get(), remaining)
                except TimeoutError:
                    break
                if addr != peer:  # RFC 1350: another TID gets an error; this transfer goes on
                    transport.sendto(p.error(p.E_UNKNOWN_TID, "unknown transfer id"), addr)
                    continue
                try:
                    reply = p.parse(data)
                except p.Malformed as exc:
                    log.info("Ignoring packet from %s:%d during a transfer: %s", *peer, exc)
                    continue
                if isinstance(reply, p.Error):
                    log.info("tftp %s:%d aborted by the client: %s", *peer, reply.message)
                    return None
                if isinstance(reply, p.Ack):
                    offset = (reply.block - base) & 0xFFFF  # block numbers wrap at 65536
                    if oack and offset == 0:
                        return 0
                    if not oack and 1 <= offset <= len(packets):
                        return base + offset
            log.debug("tftp %s:%d silent, retransmitting", *peer)
        log.info("tftp %s:%d gave up after %d retries", *peer, self.limits.retries)
        transport.sendto(p.error(p.E_UNDEFINED, "timeout"), peer)
        return None
