"""A read-only TFTP server: requests arrive on the asyncio loop; each transfer runs in a worker thread
on its own socket (a new TID, RFC 1350 §4), negotiates options (OACK), sends a window of blocks
(RFC 7440), retransmits on silence and gives up after a few tries. Every ignored packet is logged
with its reason. Threads, not coroutines, for transfers: measured in bench/boot.py, lockstep
throughput went from 0.8x to above tftpd-hpa's.

UDP sources can be spoofed, so until a peer has acknowledged something it is not trusted: its first
DATA or OACK is retransmitted only within a few times the size of its request (a spoofed 17-byte RRQ
used to draw six 516-byte blocks), and one address holds only a few such transfers at once."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace

from dpm_netproto import tftp as p
from dpm_pxe.adapters.tftp.files import Refused, resolve
from dpm_pxe.adapters.tftp.inbox import Address, Inbox
from dpm_pxe.adapters.tftp.peers import Peer, Unacked

log = logging.getLogger(__name__)

STOP_POLL = 0.25  # how often a waiting transfer thread checks that the server is stopping


@dataclass(frozen=True)
class TftpLimits:
    max_blksize: int = 1468  # fits an Ethernet frame without IP fragmentation
    max_window: int = 64
    timeout: float = 1.0  # seconds before a retransmission (unless the client asked for another)
    retries: int = 5
    max_transfers: int = 512
    unacked_per_source: int = 4  # transfers one address may hold before its first ACK
    unacked_retries: int = 2  # retransmissions of the first DATA/OACK (timeout doubling each time)
    amplification: int = 8  # bytes sent to an unacknowledged peer: at most this many times its request


def _receive_timeout(sock: socket.socket, seconds: float) -> None:
    """A kernel receive timeout (SO_RCVTIMEO) on a blocking socket: one recvfrom system call per ACK,
    where Python's own socket timeout adds a poll before each."""
    whole = int(seconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))


def _span_options(req: p.Request) -> dict[str, str]:
    return {f"tftp.option.{k}": v for k, v in req.options.items() if k in ("blksize", "windowsize", "tsize", "timeout")}


def _extend(into: list[bytes], make: Callable[[int], list[bytes]], first: int) -> None:
    into.extend(make(first))


class TftpServer:
    def __init__(
        self,
        root: Path,
        *,
        limits: TftpLimits | None = None,
        on_transfer: Callable[[str, Address, int], None] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.root = root
        self.limits = limits or TftpLimits()
        self._on_transfer = on_transfer
        self._tracer = tracer or trace.get_tracer(__name__)
        self._slots = asyncio.Semaphore(self.limits.max_transfers)
        self._threads = ThreadPoolExecutor(self.limits.max_transfers, thread_name_prefix="tftp")
        self._stopping = threading.Event()
        self.unacked = Unacked(self.limits.unacked_per_source)
        self.transfers: set[asyncio.Task[None]] = set()

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        transport, inbox = await loop.create_datagram_endpoint(Inbox, local_addr=(host, port))
        log.info("tftp listening on %s:%d, root %s", host, port, self.root)
        try:
            while not stop.is_set():
                if (got := await inbox.get(0.5)) is not None:
                    self._dispatch(*got, host, transport)
        finally:
            transport.close()
            self._stopping.set()  # transfer threads notice within STOP_POLL seconds
            await asyncio.gather(*self.transfers, return_exceptions=True)
            self._threads.shutdown(wait=False)

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
        if (leave := self.unacked.enter(peer[0])) is None:
            log.info(
                "Ignoring a request from %s:%d: it holds %d unacknowledged transfers", *peer, self.unacked.per_source
            )
            return
        unacked = Peer(leave, len(data) * self.limits.amplification)
        task = asyncio.create_task(self._transfer(packet, peer, host, unacked))
        self.transfers.add(task)
        task.add_done_callback(self.transfers.discard)

    async def _transfer(self, req: p.Request, peer: Address, host: str, unacked: Peer) -> None:
        attributes = {"tftp.file": req.filename, "tftp.peer": f"{peer[0]}:{peer[1]}", **_span_options(req)}
        with self._tracer.start_as_current_span("tftp.transfer", attributes=attributes) as span:
            async with self._slots:
                loop = asyncio.get_running_loop()
                try:
                    sent = await loop.run_in_executor(self._threads, self._transfer_blocking, req, peer, host, unacked)
                except Exception as exc:  # a bug must not pass silently; the client got an ERROR packet
                    log.exception("tftp %s:%d %s failed", *peer, req.filename)
                    span.record_exception(exc)
                    return
                finally:
                    unacked.leave()
            span.set_attribute("tftp.bytes", sent if sent is not None else -1)
        if self._on_transfer and sent is not None:
            self._on_transfer(req.filename, peer, sent)

    def _transfer_blocking(self, req: p.Request, peer: Address, host: str, unacked: Peer) -> int | None:
        """One transfer on its own socket (its TID) in a worker thread: a blocking receive wakes on the
        ACK with no event-loop round trip, which is what lockstep (windowsize 1) throughput depends on."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            try:
                path = resolve(self.root, req.filename)
            except Refused as exc:
                log.info("tftp %s:%d %s refused: %s", *peer, req.filename[:100], exc)
                sock.sendto(p.error(exc.code, str(exc)), peer)
                return None
            try:
                return self._send_file(path, req, peer, sock, unacked)
            except Exception:
                sock.sendto(p.error(p.E_UNDEFINED, "server error"), peer)  # never silence
                raise

    def _send_file(self, path: Path, req: p.Request, peer: Address, sock: socket.socket, unacked: Peer) -> int | None:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            t = p.negotiate(
                req.options,
                file_size=size,
                max_blksize=self.limits.max_blksize,
                max_window=self.limits.max_window,
                default_timeout=self.limits.timeout,
            )
            _receive_timeout(sock, min(t.timeout, STOP_POLL))
            if t.accepted and self._exchange(sock, peer, [p.oack(t.accepted)], 0, t, oack=True, peer_=unacked) is None:
                return None
            last_block = size // t.blksize + 1  # a final short (possibly empty) block ends the transfer
            fd = f.fileno()

            def window_from(first: int) -> list[bytes]:
                last = min(first + t.windowsize - 1, last_block)
                return [p.data(b, os.pread(fd, t.blksize, (b - 1) * t.blksize)) for b in range(first, last + 1)]

            acked, window = 0, window_from(1)
            while acked < last_block:
                # the next window is read while the client is busy with this one, so an ACK is answered
                # at once -- it is the one needed unless the client acknowledged only part of the window
                following = acked + len(window) + 1
                ahead: list[bytes] = []
                prepare = functools.partial(_extend, ahead, window_from, following)
                got = self._exchange(sock, peer, window, acked, t, ahead=prepare, peer_=unacked)
                if got is None:
                    return None
                window = ahead if got == following - 1 else window_from(got + 1)
                acked = got
            return size

    def _exchange(
        self,
        sock: socket.socket,
        peer: Address,
        packets: list[bytes],
        base: int,
        t: p.Transfer,
        *,
        oack: bool = False,
        ahead: Callable[[], None] | None = None,
        peer_: Peer | None = None,
    ) -> int | None:
        """Send ``packets`` (blocks base+1.., or an OACK), run ``ahead`` once while the client works, and
        return the highest block acknowledged; None when the client aborts, stays silent or the server
        stops. An unproven peer (maybe a spoofed address) gets fewer retries, backoff, and no ERROR."""
        unproven = None if peer_ is None or peer_.acked else peer_
        retries = self.limits.retries if unproven is None else self.limits.unacked_retries
        size, timeout = sum(len(x) for x in packets), t.timeout
        for attempt in range(retries + 1):
            if unproven is not None and not unproven.spend(size, first=attempt == 0):
                break
            for packet in packets:
                sock.sendto(packet, peer)
            if ahead is not None:
                ahead()
                ahead = None
            got = self._await_ack(sock, peer, len(packets), base, timeout, oack=oack)
            if got != _SILENT:
                if got is not None and unproven is not None:
                    unproven.ack()
                return got
            if self._stopping.is_set():
                return None
            if unproven is not None:
                timeout *= 2  # backoff: an unproven peer is not hammered
            log.debug("tftp %s:%d silent, retransmitting", *peer)
        log.info("tftp %s:%d gave up after %d retries", *peer, retries)
        if unproven is None:
            sock.sendto(p.error(p.E_UNDEFINED, "timeout"), peer)
        return None

    def _await_ack(
        self, sock: socket.socket, peer: Address, count: int, base: int, timeout: float, *, oack: bool
    ) -> int | None:
        """The block acknowledged within ``timeout``; None if the client aborted; _SILENT if none came.
        A partial ACK ends the window early (RFC 7440 §4); duplicate ACKs are ignored, which avoids
        the Sorcerer's Apprentice problem."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, addr = sock.recvfrom(65536)
            except (TimeoutError, BlockingIOError):
                if self._stopping.is_set() or time.monotonic() >= deadline:
                    return _SILENT
                continue
            if addr != peer:  # RFC 1350: another TID gets an error; this transfer goes on
                sock.sendto(p.error(p.E_UNKNOWN_TID, "unknown transfer id"), addr)
                continue
            if len(data) == 4 and data[1] == p.ACK and data[0] == 0:  # the hot path: a plain ACK
                block = int.from_bytes(data[2:4], "big")
            else:
                try:
                    reply = p.parse(data)
                except p.Malformed as exc:
                    log.info("Ignoring packet from %s:%d during a transfer: %s", *peer, exc)
                    continue
                if isinstance(reply, p.Error):
                    log.info("tftp %s:%d aborted by the client: %s", *peer, reply.message)
                    return None
                if not isinstance(reply, p.Ack):
                    continue
                block = reply.block
            offset = (block - base) & 0xFFFF  # block numbers wrap at 65536
            if oack and offset == 0:
                return 0
            if not oack and 1 <= offset <= count:
                return base + offset


_SILENT = -1  # no ACK within the timeout (block numbers are never negative)
