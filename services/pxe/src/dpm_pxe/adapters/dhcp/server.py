"""The DHCP/proxyDHCP listener: UDP 67 (broadcast) and 4011 (unicast). Pure decisions come from
``proxy.reply`` and ``full.full_reply``; this module reads, logs, persists full-mode leases before it
answers, and tells the boot recorder when a PXE ROM was answered. The configuration is read per packet
from a provider, so switching the mode needs no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from typing import Protocol

from opentelemetry import trace

from dpm_netproto.dhcp import ACK, OFFER, DhcpPacket, Malformed, build, parse
from dpm_netproto.pxeclient import ClientInfo
from dpm_pxe.domain.dhcp.full import Book, Effect, full_reply, requested_address
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_pxe.domain.dhcp.proxy import BootConfig, Ignore, destination, reply
from dpm_schemas.events.boot import DhcpMode

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAX_IN_FLIGHT = 256  # packets being decided at once; beyond it a flood is dropped, not queued
WITNESS_WAIT = 1.0  # seconds an answer waits for the record of where its client boots from
SIOCGIFADDR = 0x8915


def interface_ipv4(name: str) -> IPv4Address | None:
    """The IPv4 address of a network interface (the boot network's), or None if it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return IPv4Address(raw[20:24])


def udp_socket(host: str, port: int, interface: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    if interface:  # answer on the boot network only; broadcasts leave through it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class Leases(Protocol):
    """Where full mode keeps its holdings (``dhcp.leases.LeaseStore`` in PostgreSQL)."""

    async def book(self, mac: str, requested: IPv4Address | None, pools: tuple[Pool, ...]) -> Book: ...

    async def persist(self, effect: Effect) -> None: ...


OnBoot = Callable[[ClientInfo, IPv4Address | None], Awaitable[None]]
# every packet decided: (request, its source address, the answer or None, on 4011), before the answer goes
OnPacket = Callable[[DhcpPacket, str, DhcpPacket | None, bool], Awaitable[None]]


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, handle: Callable[[bytes, Address, asyncio.DatagramTransport], None]) -> None:
        self.handle = handle
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.handle(data, addr, self.transport)


class DhcpServer:
    def __init__(
        self,
        config: Callable[[], BootConfig],
        *,
        leases: Leases | None = None,
        interface: str | None = None,
        on_boot: OnBoot | None = None,
        on_packet: OnPacket | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._config = config
        self._leases = leases
        self.interface = interface
        self._on_boot = on_boot
        self._on_packet = on_packet
        self._tracer = tracer or trace.get_tracer(__name__)
        self._full_lock = asyncio.Lock()  # one full-mode decision at a time: an address is offered once
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0
        self.ignored = 0

    def received(self, data: bytes, source: Address, transport: asyncio.DatagramTransport, *, on_4011: bool) -> None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.ignored += 1
            log.warning("Ignoring packet from %s:%d: %d packets in flight (flood?)", *source, len(self._tasks))
            return
        task = asyncio.create_task(self.handle(data, source, transport, on_4011=on_4011))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(
        self, data: bytes, source: Address, transport: asyncio.DatagramTransport, *, on_4011: bool
    ) -> None:
        try:
            request = parse(data)
        except Malformed as exc:
            self.ignored += 1
            log.info("Ignoring packet from %s:%d: %s", *source, exc)
            return
        with self._tracer.start_as_current_span("dhcp.exchange") as span:
            span.set_attributes({"dhcp.mac": request.mac, "dhcp.type": request.message_type or 0, "dhcp.4011": on_4011})
            try:
                answer = await self._decide(request, on_4011)
            except Exception as exc:  # the lease store may be unreachable: the client retries
                self.ignored += 1
                log.warning("Ignoring packet from %s (%s): %r", request.mac, source[0], exc)
                span.record_exception(exc)
                return
            await self._witness(request, source, None if isinstance(answer, Ignore) else answer, on_4011)
            if isinstance(answer, Ignore):
                self.ignored += 1
                span.set_attribute("dhcp.ignored", answer.reason)
                log.info("Ignoring packet from %s (%s): %s", request.mac, source[0], answer.reason)
                return
            transport.sendto(build(answer), destination(request, source, on_4011=on_4011))
            self.answered += 1
            span.set_attribute("dhcp.answer", answer.options.get(53, b"\0")[0])
        await self._booted(request, answer)

    async def _witness(self, request: DhcpPacket, source: Address, answer: DhcpPacket | None, on_4011: bool) -> None:
        """Tell the boot witness what this packet says about its client (where it boots from) before it
        is answered, so a script request that follows the answer finds it recorded."""
        if self._on_packet is None:
            return
        try:
            await asyncio.wait_for(self._on_packet(request, source[0], answer, on_4011), WITNESS_WAIT)
        except Exception as exc:  # recording must never stop (nor long delay) the answers
            log.warning("could not record what %s's packet says: %r", request.mac, exc)

    async def _decide(self, request: DhcpPacket, on_4011: bool) -> DhcpPacket | Ignore:
        config = self._config()
        if config.mode is not DhcpMode.FULL or on_4011:
            return reply(request, config, on_4011=on_4011)
        if self._leases is None:
            return Ignore("full mode needs the lease store")
        async with self._full_lock:
            book = await self._leases.book(request.mac, requested_address(request), config.pools)
            outcome = full_reply(request, config, book)
            if outcome.effect is not None:
                await self._leases.persist(outcome.effect)  # before the answer: an ACK is never forgotten
        return outcome.answer

    async def _booted(self, request: DhcpPacket, answer: DhcpPacket) -> None:
        """A PXE ROM got its boot file (proxy OFFER, or the full-mode ACK): that machine is network-booting."""
        info = ClientInfo.from_packet(request)
        kind = answer.message_type
        if self._on_boot is None or not info.is_pxe or info.is_ipxe or not answer.file:
            return
        if kind == OFFER and int(answer.yiaddr):
            return  # full mode: wait for the ACK
        if kind in (OFFER, ACK):
            try:
                await self._on_boot(info, answer.yiaddr if int(answer.yiaddr) else None)
            except Exception as exc:  # recording must never stop the answers
                log.warning("could not record the boot of %s: %r", info.mac, exc)

    async def serve(self, host: str, ports: tuple[int, int], stop: asyncio.Event) -> None:
        """Listen on the DHCP port and the PXE port (67 and 4011 by default) until ``stop``."""
        loop = asyncio.get_running_loop()
        transports = []
        for port, on_4011 in zip(ports, (False, True), strict=True):
            listener = _Listener(functools.partial(self.received, on_4011=on_4011))
            transport, _ = await loop.create_datagram_endpoint(
                lambda lst=listener: lst,  # type: ignore[misc]
                sock=udp_socket(host, port, self.interface),
            )
            transports.append(transport)
        log.info("dhcp listening on %s ports %s (interface %s)", host, ports, self.interface or "any")
        try:
            await stop.wait()
        finally:
            for transport in transports:
                with contextlib.suppress(Exception):
                    transport.close()
            for task in list(self._tasks):
                task.cancel()
