"""Full DHCP mode (pure): dpm hands out addresses from its pools, with PXE boot information for PXE
clients, following RFC 2131 §4.3. The server reads a ``Book`` (holdings and reservations) before the
decision and persists the returned ``Effect`` before it sends the answer, so an ACKed lease survives a
crash and no address is offered twice.

Address choice, in order: the machine's reservation (its registered IP, inside a pool's subnet), the
address it already holds, the address it asks for if free, then the first free one of the ranges
(found by the store, which sees every holding).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from dpm_netproto.dhcp import (
    ACK,
    DECLINE,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    OPT_LEASE_TIME,
    OPT_MESSAGE_TYPE,
    OPT_REQUESTED_IP,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    RELEASE,
    REQUEST,
    DhcpPacket,
    reply_to,
)
from dpm_netproto.pxeclient import ClientInfo
from dpm_pxe.domain.dhcp.pools import Pool, pool_of
from dpm_pxe.domain.dhcp.proxy import BootConfig, Ignore, boot_file, boot_reply

OPT_DNS = 6
OPT_RENEWAL = 58
OPT_REBINDING = 59
OFFER_HOLD = 60  # seconds an offered address stays reserved for the client that was offered it


@dataclass(frozen=True)
class Holding:
    ip: IPv4Address
    mac: str
    state: str  # offered | bound | declined


@dataclass(frozen=True)
class Book:
    """What the decision needs to know, read for one request: the unexpired holdings and reservations
    (mac -> registered IP) of this client and of the address it asks for, and the first few addresses
    of the ranges that nobody holds or has reserved -- bounded, however large the pools."""

    holdings: tuple[Holding, ...] = ()
    reservations: Mapping[str, IPv4Address] = field(default_factory=dict)
    free: tuple[IPv4Address, ...] = ()

    def holder(self, ip: IPv4Address) -> Holding | None:
        return next((h for h in self.holdings if h.ip == ip), None)

    def held_by(self, mac: str) -> Holding | None:
        return next((h for h in self.holdings if h.mac == mac and h.state != "declined"), None)

    def free_for(self, ip: IPv4Address, mac: str) -> bool:
        """Nobody else holds or has reserved ``ip``."""
        held = self.holder(ip)
        if held is not None and (held.mac != mac or held.state == "declined"):
            return False
        return all(owner == mac for owner, reserved in self.reservations.items() if reserved == ip)


@dataclass(frozen=True)
class Hold:
    """Persist: ``ip`` is offered to / leased by ``mac`` for ``seconds``."""

    ip: IPv4Address
    mac: str
    state: str
    seconds: int


@dataclass(frozen=True)
class Free:
    """Persist: ``mac`` no longer holds ``ip`` (released, or it took another server's offer)."""

    ip: IPv4Address | None
    mac: str


@dataclass(frozen=True)
class Decline:
    ip: IPv4Address
    mac: str


Effect = Hold | Free | Decline


@dataclass(frozen=True)
class Outcome:
    answer: DhcpPacket | Ignore
    effect: Effect | None = None


def choose(mac: str, requested: IPv4Address | None, pools: tuple[Pool, ...], book: Book) -> IPv4Address | None:
    reserved = book.reservations.get(mac)
    if reserved is not None and pool_of(pools, reserved) is not None:
        return reserved
    held = book.held_by(mac)
    if held is not None and pool_of(pools, held.ip) is not None:
        return held.ip
    if requested is not None and any(p.in_range(requested) for p in pools) and book.free_for(requested, mac):
        return requested
    for ip in book.free:
        pool = next((p for p in pools if p.in_range(ip)), None)
        if pool is not None and ip not in (pool.router, pool.network.network_address) and book.free_for(ip, mac):
            return ip
    return None


def _allowed(mac: str, ip: IPv4Address, pools: tuple[Pool, ...], book: Book) -> bool:
    """May ``mac`` use ``ip`` (INIT-REBOOT, RENEWING)? Its reservation, its holding, or a free range address."""
    reserved = book.reservations.get(mac)
    if reserved is not None and pool_of(pools, reserved) is not None:
        return ip == reserved
    held = book.held_by(mac)
    if held is not None and held.ip == ip:
        return True
    return any(p.in_range(ip) for p in pools) and book.free_for(ip, mac)


def _address_options(pool: Pool, kind: int, server_ip: IPv4Address) -> dict[int, bytes]:
    options = {
        OPT_MESSAGE_TYPE: bytes([kind]),
        OPT_SERVER_ID: server_ip.packed,
        OPT_SUBNET_MASK: pool.network.netmask.packed,
        OPT_LEASE_TIME: pool.lease_seconds.to_bytes(4, "big"),
        OPT_RENEWAL: (pool.lease_seconds // 2).to_bytes(4, "big"),
        OPT_REBINDING: (pool.lease_seconds * 7 // 8).to_bytes(4, "big"),
    }
    if pool.router is not None:
        options[OPT_ROUTER] = pool.router.packed
    if pool.dns:
        options[OPT_DNS] = b"".join(d.packed for d in pool.dns)
    return options


def _answer(request: DhcpPacket, config: BootConfig, ip: IPv4Address, kind: int) -> DhcpPacket:
    assert config.server_ip is not None
    pool = pool_of(config.pools, ip)
    assert pool is not None
    options = _address_options(pool, kind, config.server_ip)
    info = ClientInfo.from_packet(request)
    if info.is_pxe and not isinstance(file := boot_file(info, config), Ignore):
        return boot_reply(request, config.server_ip, file, kind, http=info.is_http, yiaddr=ip, options=options)
    return reply_to(request, yiaddr=ip, options=options)


def _nak(request: DhcpPacket, server_ip: IPv4Address) -> DhcpPacket:
    return reply_to(
        request,
        flags=request.flags | 0x8000,  # RFC 2131 §4.3.2: a NAK is broadcast when there is no relay
        options={OPT_MESSAGE_TYPE: bytes([NAK]), OPT_SERVER_ID: server_ip.packed},
    )


def _ip_option(request: DhcpPacket, code: int) -> IPv4Address | None:
    raw = request.options.get(code, b"")
    return IPv4Address(raw) if len(raw) == 4 else None


def requested_address(request: DhcpPacket) -> IPv4Address | None:
    """The address a client asks for: option 50, else the one it renews (ciaddr)."""
    return _ip_option(request, OPT_REQUESTED_IP) or (request.ciaddr if int(request.ciaddr) else None)


def full_reply(request: DhcpPacket, config: BootConfig, book: Book) -> Outcome:
    if config.server_ip is None:
        return Outcome(Ignore("no server IP: set DPM_PXE_SERVER_IP, DPM_PXE_DHCP_INTERFACE or the boot settings"))
    if not config.pools:
        return Outcome(Ignore("full mode has no address ranges; add one to the boot settings"))
    mac, kind = request.mac, request.message_type
    requested = _ip_option(request, OPT_REQUESTED_IP)
    if kind == DISCOVER:
        ip = choose(mac, requested, config.pools, book)
        if ip is None:
            return Outcome(Ignore("no free address in the ranges (pool exhausted)"))
        hold = None if ip == book.reservations.get(mac) else Hold(ip, mac, "offered", OFFER_HOLD)
        return Outcome(_answer(request, config, ip, OFFER), hold)
    if kind == REQUEST:
        server_id = _ip_option(request, OPT_SERVER_ID)
        if server_id is not None and server_id != config.server_ip:  # SELECTING another server's offer
            held = book.held_by(mac)
            free = Free(held.ip, mac) if held is not None and held.state == "offered" else None
            return Outcome(Ignore(f"the client chose the offer of {server_id}"), free)
        ip = requested or (request.ciaddr if int(request.ciaddr) else None)
        if ip is None:
            return Outcome(Ignore("REQUEST names no address (no option 50, no ciaddr)"))
        if server_id is None and pool_of(config.pools, ip) is None:
            return Outcome(Ignore(f"{ip} is not on a network of ours; another server is authoritative"))
        if not _allowed(mac, ip, config.pools, book):
            return Outcome(_nak(request, config.server_ip), None)
        pool = pool_of(config.pools, ip)
        assert pool is not None
        return Outcome(_answer(request, config, ip, ACK), Hold(ip, mac, "bound", pool.lease_seconds))
    if kind == RELEASE:
        return Outcome(
            Ignore("RELEASE (no answer is sent)"), Free(request.ciaddr if int(request.ciaddr) else None, mac)
        )
    if kind == DECLINE and requested is not None:
        return Outcome(Ignore(f"DECLINE: {requested} is in use on the network"), Decline(requested, mac))
    if kind == INFORM:
        return Outcome(Ignore("INFORM is not answered"))
    return Outcome(Ignore(f"message type {kind} is not handled in full mode"))
