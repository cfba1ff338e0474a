"""Full DHCP mode (RFC 2131 §4.3): address choice, ACK/NAK, release, decline, pool exhaustion."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from dpm_netproto.dhcp import (
    ACK,
    BOOTREQUEST,
    DECLINE,
    DISCOVER,
    NAK,
    OFFER,
    OPT_MESSAGE_TYPE,
    OPT_VENDOR_CLASS,
    RELEASE,
    REQUEST,
    DhcpPacket,
)
from dpm_pxe.domain.dhcp.full import Book, Decline, Free, Hold, Holding, full_reply
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_pxe.domain.dhcp.proxy import BootConfig, Ignore
from dpm_schemas.events.boot import DhcpMode, DhcpRange

SERVER = IPv4Address("10.0.0.1")
POOL = Pool.from_range(DhcpRange(start="10.0.0.100", end="10.0.0.102", subnet="10.0.0.0/24", router="10.0.0.1"))
CONFIG = BootConfig(mode=DhcpMode.FULL, server_ip=SERVER, script_url="http://x/{mac}", pools=(POOL,))
A, B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
FREE = tuple(IPv4Address(f"10.0.0.{n}") for n in (100, 101, 102))  # what the store found unused


def packet(mac: str, kind: int, *, pxe: bool = False, ciaddr: str = "0.0.0.0", **opts: bytes) -> DhcpPacket:
    options = {OPT_MESSAGE_TYPE: bytes([kind]), **{int(k[1:]): v for k, v in opts.items()}}
    if pxe:
        options[OPT_VENDOR_CLASS] = b"PXEClient:Arch:00000"
    return DhcpPacket(
        op=BOOTREQUEST, xid=7, chaddr=bytes.fromhex(mac.replace(":", "")), ciaddr=IPv4Address(ciaddr), options=options
    )


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


def test_discover_offers_the_first_free_address_and_holds_it_briefly() -> None:
    out = full_reply(packet(A, DISCOVER), CONFIG, Book(free=FREE))
    assert not isinstance(out.answer, Ignore)
    assert out.answer.message_type == OFFER and out.answer.yiaddr == ip("10.0.0.100") and out.answer.file == b""
    assert out.effect == Hold(ip("10.0.0.100"), A, "offered", 60)


def test_pxe_clients_get_boot_information_with_their_address() -> None:
    out = full_reply(packet(A, DISCOVER, pxe=True), CONFIG, Book(free=FREE))
    assert not isinstance(out.answer, Ignore) and out.answer.file == b"undionly.kpxe"
    assert out.answer.options[OPT_VENDOR_CLASS] == b"PXEClient" and out.answer.siaddr == SERVER


def test_uefi_http_boot_clients_get_an_address_and_the_loader_url() -> None:
    config = BootConfig(
        mode=DhcpMode.FULL, server_ip=SERVER, script_url="http://x/{mac}", pools=(POOL,), files_url="http://x/files"
    )
    req = packet(A, DISCOVER, o60=b"HTTPClient:Arch:00016:UNDI:003001", o93=(16).to_bytes(2, "big"))
    out = full_reply(req, config, Book(free=FREE))
    assert not isinstance(out.answer, Ignore) and out.answer.yiaddr == ip("10.0.0.100")
    assert out.answer.file == b"http://x/files/ipxe.efi" and out.answer.options[OPT_VENDOR_CLASS] == b"HTTPClient"


def test_a_reservation_wins_and_is_never_offered_to_another_client() -> None:
    book = Book(reservations={A: ip("10.0.0.50")}, free=FREE)  # .50: outside the range, in the subnet
    out = full_reply(packet(A, DISCOVER), CONFIG, book)
    assert not isinstance(out.answer, Ignore) and out.answer.yiaddr == ip("10.0.0.50") and out.effect is None
    # asking for another machine's reserved address gets the next free one instead
    taken = Book(reservations={B: ip("10.0.0.100")}, free=FREE)
    other = full_reply(packet("52:54:00:00:00:0c", DISCOVER, o50=ip("10.0.0.100").packed), CONFIG, taken)
    assert not isinstance(other.answer, Ignore) and other.answer.yiaddr == ip("10.0.0.101")


def test_an_exhausted_pool_is_ignored_with_a_reason() -> None:
    out = full_reply(packet(A, DISCOVER), CONFIG, Book(free=()))
    assert isinstance(out.answer, Ignore) and "exhausted" in out.answer.reason


def test_the_router_is_never_handed_out() -> None:
    config = BootConfig(
        mode=DhcpMode.FULL,
        server_ip=SERVER,
        script_url="",
        pools=(Pool.from_range(DhcpRange(start="10.0.0.1", end="10.0.0.9", subnet="10.0.0.0/24")),),
    )
    with_router = BootConfig(**{**config.__dict__, "pools": (Pool(**{**config.pools[0].__dict__, "router": SERVER}),)})
    out = full_reply(packet(A, DISCOVER), with_router, Book(free=(SERVER, ip("10.0.0.2"))))
    assert not isinstance(out.answer, Ignore) and out.answer.yiaddr == ip("10.0.0.2")


def test_request_for_our_offer_is_acked_and_bound_for_the_lease_time() -> None:
    book = Book(holdings=(Holding(ip("10.0.0.100"), A, "offered"),))
    req = packet(A, REQUEST, o54=SERVER.packed, o50=ip("10.0.0.100").packed)
    out = full_reply(req, CONFIG, book)
    assert not isinstance(out.answer, Ignore) and out.answer.message_type == ACK
    assert out.effect == Hold(ip("10.0.0.100"), A, "bound", 3600)


def test_request_for_an_address_someone_else_holds_is_naked() -> None:
    book = Book(holdings=(Holding(ip("10.0.0.100"), B, "bound"),))
    out = full_reply(packet(A, REQUEST, o50=ip("10.0.0.100").packed), CONFIG, book)
    assert not isinstance(out.answer, Ignore) and out.answer.message_type == NAK and out.effect is None
    assert out.answer.broadcast


def test_choosing_another_servers_offer_frees_ours() -> None:
    book = Book(holdings=(Holding(ip("10.0.0.100"), A, "offered"),))
    out = full_reply(packet(A, REQUEST, o54=ip("10.0.0.9").packed, o50=ip("10.0.0.100").packed), CONFIG, book)
    assert isinstance(out.answer, Ignore) and out.effect == Free(ip("10.0.0.100"), A)


def test_a_foreign_network_request_is_left_to_its_server() -> None:
    out = full_reply(packet(A, REQUEST, o50=ip("192.168.1.5").packed), CONFIG, Book())
    assert isinstance(out.answer, Ignore) and "authoritative" in out.answer.reason


def test_renewal_by_ciaddr_keeps_the_lease() -> None:
    book = Book(holdings=(Holding(ip("10.0.0.101"), A, "bound"),))
    out = full_reply(packet(A, REQUEST, ciaddr="10.0.0.101"), CONFIG, book)
    assert (
        not isinstance(out.answer, Ignore) and out.answer.message_type == ACK and out.answer.yiaddr == ip("10.0.0.101")
    )


@pytest.mark.parametrize(
    ("req", "effect"),
    [
        (packet(A, RELEASE, ciaddr="10.0.0.100"), Free(ip("10.0.0.100"), A)),
        (packet(A, DECLINE, o50=ip("10.0.0.100").packed), Decline(ip("10.0.0.100"), A)),
    ],
)
def test_release_and_decline_are_persisted_and_not_answered(req: DhcpPacket, effect: object) -> None:
    out = full_reply(req, CONFIG, Book())
    assert isinstance(out.answer, Ignore) and out.effect == effect


def test_a_declined_address_is_not_given_to_the_client_that_declined_it() -> None:
    book = Book(holdings=(Holding(ip("10.0.0.100"), A, "declined"),), free=(ip("10.0.0.101"),))
    out = full_reply(packet(A, DISCOVER, o50=ip("10.0.0.100").packed), CONFIG, book)
    assert not isinstance(out.answer, Ignore) and out.answer.yiaddr == ip("10.0.0.101")


def test_no_ranges_or_no_server_ip_is_a_reason_not_a_crash() -> None:
    no_pools = BootConfig(mode=DhcpMode.FULL, server_ip=SERVER, script_url="", pools=())
    assert "ranges" in full_reply(packet(A, DISCOVER), no_pools, Book()).answer.reason  # type: ignore[union-attr]
    no_ip = BootConfig(mode=DhcpMode.FULL, server_ip=None, script_url="", pools=(POOL,))
    assert "server IP" in full_reply(packet(A, DISCOVER), no_ip, Book()).answer.reason  # type: ignore[union-attr]
