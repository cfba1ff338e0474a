"""Answers IPv6 router solicitations on the boot interface (``dpm_pxe.domain.routeradv``): a raw
ICMPv6 socket bound to that interface, in the all-routers group, sending the empty advertisement
to all nodes at most once a second. Needs CAP_NET_RAW, as DHCP's port 67 needs root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from pathlib import Path

from dpm_pxe.domain import routeradv

log = logging.getLogger(__name__)
SYSFS = Path("/sys/class/net")
ICMP6_FILTER = 1  # <netinet/icmp6.h>: the kernel passes only the types a socket asks for


def _only_solicitations() -> bytes:
    """The ICMP6_FILTER bitmap (a set bit blocks its type): everything but router solicitations."""
    words = [0xFFFFFFFF] * 8
    t = routeradv.ROUTER_SOLICITATION
    words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


def open_socket(interface: str) -> tuple[socket.socket, int]:
    """The raw socket and the interface's index; OSError when the interface or the right is missing."""
    index = socket.if_nametoindex(interface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _only_solicitations())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, routeradv.HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        group = socket.inet_pton(socket.AF_INET6, routeradv.ALL_ROUTERS) + struct.pack("@I", index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock, index


def _hop_limit(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(data) >= 4:
            return int(struct.unpack("@i", data[:4])[0])
    return None


class RouterAdvertiser:
    """Reads solicitations and sends the paced advertisement until ``stop`` is set."""

    def __init__(self, interface: str, *, gap: float = 1.0) -> None:
        self.interface = interface
        self.pacer = routeradv.Pacer(gap)
        mac = (SYSFS / interface / "address").read_text() if (SYSFS / interface / "address").exists() else ""
        self.packet = routeradv.advertisement(routeradv.parse_mac(mac))
        self.solicitations = 0  # valid ones seen
        self.sent = 0

    async def serve(self, stop: asyncio.Event) -> None:
        sock, index = open_socket(self.interface)
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()
        loop.add_reader(sock.fileno(), arrived.set)
        log.info("answering IPv6 router solicitations on %s (router lifetime 0, no prefix)", self.interface)
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await arrived.wait()
                arrived.clear()
                if self._drain(sock):
                    await self._answer(sock, index, stop)
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()

    def _drain(self, sock: socket.socket) -> bool:
        """Read what arrived; whether any of it was a valid solicitation. At most 256 per call."""
        solicited = False
        for _ in range(256):
            try:
                data, ancillary, _flags, source = sock.recvmsg(1500, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("router solicitations: read failed: %r", exc)
                break
            if routeradv.is_solicitation(data, str(source[0]), _hop_limit(ancillary)):
                self.solicitations += 1
                solicited = True
        return solicited

    async def _answer(self, sock: socket.socket, index: int, stop: asyncio.Event) -> None:
        delay = self.pacer.solicited(time.monotonic())
        if delay is None:
            return
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
        try:
            sock.sendto(self.packet, (routeradv.ALL_NODES, 0, 0, index))
            self.sent += 1
        except OSError as exc:  # no link-local address on the interface yet, or it went down
            log.warning("router advertisement on %s not sent: %r", self.interface, exc)
        self.pacer.sent(time.monotonic())
