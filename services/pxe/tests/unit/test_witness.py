"""What a boot exchange says about where a MAC boots from (issue 12 item 5): the addresses a DHCP
packet names, and a TFTP read paired with the ROM that was just given that file -- only when that
pairing is unambiguous."""

from __future__ import annotations

from ipaddress import IPv4Address

from dpm_netproto.dhcp import (
    BOOTREQUEST,
    DISCOVER,
    OPT_MESSAGE_TYPE,
    OPT_REQUESTED_IP,
    OPT_VENDOR_CLASS,
    REQUEST,
    DhcpPacket,
)
from dpm_pxe.domain.witness import TftpPairing, dhcp_addresses

MAC = bytes.fromhex("525400aa0001")
PXE = b"PXEClient:Arch:00007:UNDI:003016"


def packet(kind: int, *, vendor: bytes = PXE, **fields: object) -> DhcpPacket:
    options = {OPT_MESSAGE_TYPE: bytes([kind]), OPT_VENDOR_CLASS: vendor}
    if (requested := fields.pop("requested", None)) is not None:
        options[OPT_REQUESTED_IP] = IPv4Address(str(requested)).packed
    return DhcpPacket(op=BOOTREQUEST, xid=1, chaddr=MAC, options=options, **fields)  # type: ignore[arg-type]


def test_a_request_names_the_address_it_takes() -> None:
    assert dhcp_addresses(packet(REQUEST, requested="10.0.0.9"), "0.0.0.0", on_4011=False) == [
        (IPv4Address("10.0.0.9"), "dhcp-requested")
    ]


def test_ciaddr_and_the_source_of_a_4011_request() -> None:
    found = dhcp_addresses(packet(REQUEST, ciaddr=IPv4Address("10.0.0.9")), "10.0.0.9", on_4011=True)
    assert found == [(IPv4Address("10.0.0.9"), "dhcp-ciaddr")]  # the same address once
    assert dhcp_addresses(packet(REQUEST), "10.0.0.8", on_4011=True) == [(IPv4Address("10.0.0.8"), "dhcp-4011")]


def test_nothing_from_a_bare_discover_a_relay_or_a_client_that_is_no_pxe_client() -> None:
    assert dhcp_addresses(packet(DISCOVER), "0.0.0.0", on_4011=False) == []
    relayed = packet(REQUEST, giaddr=IPv4Address("10.0.1.1"))
    assert dhcp_addresses(relayed, "10.0.1.1", on_4011=True) == []  # the relay's address, not the client's
    office = packet(REQUEST, vendor=b"MSFT 5.0", requested="10.0.0.9")
    assert dhcp_addresses(office, "0.0.0.0", on_4011=False) == []
    assert dhcp_addresses(packet(DISCOVER, requested="10.0.0.9"), "0.0.0.0", on_4011=False) == []


def test_a_tftp_read_pairs_with_the_one_rom_given_that_file() -> None:
    pairing = TftpPairing()
    pairing.offered("52:54:00:aa:00:01", "ipxe.efi", now=0)
    assert pairing.fetched("undionly.kpxe", now=1) is None  # another file
    assert pairing.fetched("/ipxe.efi", now=2) == "52:54:00:aa:00:01"
    assert pairing.fetched("ipxe.efi", now=3) is None  # paired already: a second reader is not that machine


def test_an_ambiguous_or_late_tftp_read_pairs_with_nobody() -> None:
    pairing = TftpPairing(window=30)
    pairing.offered("52:54:00:aa:00:01", "ipxe.efi", now=0)
    pairing.offered("52:54:00:aa:00:02", "ipxe.efi", now=1)
    assert pairing.fetched("ipxe.efi", now=2) is None  # which of the two? neither
    pairing = TftpPairing(window=30)
    pairing.offered("52:54:00:aa:00:01", "ipxe.efi", now=0)
    assert pairing.fetched("ipxe.efi", now=31) is None
