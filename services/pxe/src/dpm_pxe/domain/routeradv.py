"""The router advertisement that ends iPXE's wait for IPv6 (RFC 4861 §4.1-4.2), as pure functions.

iPXE's autoboot configures every protocol it has before it boots, and on a segment with no IPv6
router it waits about 13 s for a router advertisement that never comes. iPXE stops waiting at the
first advertisement it gets, and when that one asks for no DHCPv6 (neither the M nor the O flag)
its IPv6 configuration is complete. So dpm answers a router solicitation with an advertisement that
offers nothing: router lifetime 0 (dpm is not a default router; RFC 4861 §6.3.4), no prefix, no
flags, hop limit and timers unspecified (0). Hosts that are not booting ignore it in effect.

It is opt-in: on a segment that has a real IPv6 router wanting DHCPv6, an iPXE that hears dpm first
would not ask for DHCPv6 (an IPv4 boot still works)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
SOURCE_LINK_LAYER = 1  # option type: the sender's link-layer address (RFC 4861 §4.6.1)
HOP_LIMIT = 255  # neighbour discovery is sent, and only accepted, with hop limit 255 (§6.1.1)
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"


def is_solicitation(packet: bytes, source: str, hop_limit: int | None) -> bool:
    """Whether an ICMPv6 packet as a raw socket delivers it (no IPv6 header) is a router solicitation
    RFC 4861 §6.1.1 lets through: hop limit 255 (it came through no router), code 0, at least 8
    bytes, from a link-local or the unspecified address. The kernel has checked the checksum."""
    if len(packet) < 8 or packet[0] != ROUTER_SOLICITATION or packet[1] != 0:
        return False
    if hop_limit is not None and hop_limit != HOP_LIMIT:
        return False
    try:
        address = ipaddress.IPv6Address(source.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_unspecified or address.is_link_local


@dataclass
class Pacer:
    """When to send: every answer goes to all nodes (one advertisement answers every machine that
    solicited meanwhile, as a boot storm does), at most one per ``gap`` seconds however many
    solicitations arrive, so a flood of them costs one packet a second."""

    gap: float = 1.0
    last: float = float("-inf")
    pending: bool = False

    def solicited(self, now: float) -> float | None:
        """A solicitation arrived at ``now``: the delay before the answer, or None when one is
        already scheduled (it answers this one too)."""
        if self.pending:
            return None
        self.pending = True
        return max(0.0, self.last + self.gap - now)

    def sent(self, now: float) -> None:
        self.pending, self.last = False, now


def advertisement(mac: bytes | None) -> bytes:
    """The advertisement: no hop limit, no M/O flags, router lifetime 0, no reachable or retransmit
    time, and the sender's MAC (saves the client a neighbour solicitation). The checksum is left 0:
    the kernel fills it in for ICMPv6 raw sockets."""
    header = struct.pack("!BBHBBHII", ROUTER_ADVERTISEMENT, 0, 0, 0, 0, 0, 0, 0)
    if mac is None or len(mac) != 6:
        return header
    return header + struct.pack("!BB6s", SOURCE_LINK_LAYER, 1, mac)


def parse_mac(text: str) -> bytes | None:
    """``aa:bb:cc:dd:ee:ff`` (as /sys/class/net/*/address holds it) as 6 bytes, else None."""
    parts = text.strip().split(":")
    if len(parts) != 6:
        return None
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        return None
