"""The DHCP/proxyDHCP listener: UDP 67 (broadcast) and 4011 (unicast). Pure decisions come from
``proxy.reply``; this module only reads, logs and sends. The mode is read per packet from a
provider, so switching it needs no restart."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable

from dpm_pxe.dhcp.client import ClientInfo
from dpm_pxe.dhcp.packet import Malformed, build, parse
from dpm_pxe.dhcp.proxy import BootConfig, Ignore, destination, reply

log = logging.getLogger(__name__)

Address = tuple[str, int]


def udp_socket(host: str, port: int, interface: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    if interface:  # answer on the boot network only; broadcasts leave through it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


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
        interface: str | None = None,
        on_client: Callable[[ClientInfo, Address], None] | None = None,
    ) -> None:
        self._config = config
        self.interface = interface
        self._on_client = on_client
        self.answered = 0
        self.ignored = 0

    def handle(self, data: bytes, source: Address, transport: asyncio.DatagramTransport, *, on_4011: bool) -> None:
        try:
            request = parse(data)
        except Malformed as exc:
            self.ignored += 1
            log.info("Ignoring packet from %s:%d: %s", *source, exc)
            return
        answer = reply(request, self._config(), on_4011=on_4011)
        if isinstance(answer, Ignore):
            self.ignored += 1
            log.info("Ignoring packet from %s (%s): %s", request.mac, source[0], answer.reason)
            return
        transport.sendto(build(answer), destination(request, source, on_4011=on_4011))
        self.answered += 1
        if self._on_client is not None:
            self._on_client(ClientInfo.from_packet(request), source)

    async def serve(self, host: str, ports: tuple[int, int], stop: asyncio.Event) -> None:
        """Listen on the DHCP port and the PXE port (67 and 4011 by default) until ``stop``."""
        loop = asyncio.get_running_loop()
        transports = []
        for port, on_4011 in zip(ports, (False, True), strict=True):
            listener = _Listener(functools.partial(self.handle, on_4011=on_4011))
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
