"""DHCP parsing and building: real-shaped PXE requests, malformed and truncated packets (a reason,
never a crash), and fuzzing of the parser."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpm_netproto.dhcp import (
    BOOTREQUEST,
    DISCOVER,
    OPT_CLIENT_ARCH,
    OPT_CLIENT_UUID,
    OPT_MESSAGE_TYPE,
    OPT_OVERLOAD,
    OPT_USER_CLASS,
    OPT_VENDOR_CLASS,
    DhcpPacket,
    Malformed,
    build,
    parse,
)
from dpm_netproto.pxeclient import ClientInfo
from dpm_schemas.events.boot import Arch

MAC = bytes.fromhex("525400abcdef")
SMBIOS = uuid.UUID("4c4c4544-0042-3610-8048-b2c04f4d4e31")


def pxe_discover(arch: int = 7, **extra: bytes) -> DhcpPacket:
    options = {
        OPT_MESSAGE_TYPE: bytes([DISCOVER]),
        OPT_CLIENT_ARCH: arch.to_bytes(2, "big"),
        OPT_VENDOR_CLASS: f"PXEClient:Arch:{arch:05d}:UNDI:003016".encode(),
        OPT_CLIENT_UUID: b"\x00" + SMBIOS.bytes_le,
    }
    return DhcpPacket(
        op=BOOTREQUEST,
        xid=0x1234ABCD,
        chaddr=MAC,
        flags=0x8000,
        options={**options, **{int(k[1:]): v for k, v in extra.items()}},
    )


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        (0, Arch.BIOS_X86),
        (7, Arch.UEFI_X64),
        (9, Arch.UEFI_X64),
        (11, Arch.UEFI_ARM64),
        (16, Arch.UEFI_X64_HTTP),
        (2, Arch.UNKNOWN),
    ],
)
def test_pxe_discover_round_trip_and_client_facts(arch: int, expected: Arch) -> None:
    raw = build(pxe_discover(arch))
    assert len(raw) >= 300 and raw[236:240] == b"\x63\x82\x53\x63"
    packet = parse(raw)
    info = ClientInfo.from_packet(packet)
    assert (info.mac, info.message_type, info.arch, info.client_uuid) == (
        "52:54:00:ab:cd:ef",
        DISCOVER,
        expected,
        SMBIOS,
    )
    assert info.is_pxe and not info.is_ipxe and packet.broadcast and packet.xid == 0x1234ABCD


def test_ipxe_is_recognised_by_user_class_or_its_own_option() -> None:
    assert ClientInfo.from_packet(parse(build(pxe_discover(o77=b"\x04iPXE")))).is_ipxe
    assert ClientInfo.from_packet(parse(build(pxe_discover(o175=b"\x13\x01\x01")))).is_ipxe
    plain = DhcpPacket(op=BOOTREQUEST, xid=1, chaddr=MAC, options={OPT_MESSAGE_TYPE: bytes([DISCOVER])})
    info = ClientInfo.from_packet(parse(build(plain)))
    assert not info.is_pxe and info.arch is Arch.BIOS_X86 and info.client_uuid is None
    assert OPT_USER_CLASS == 77


def test_long_options_are_split_and_rejoined_and_overload_is_honoured() -> None:
    long_class = b"x" * 600
    packet = parse(build(pxe_discover(o60=long_class)))
    assert packet.options[OPT_VENDOR_CLASS] == long_class
    raw = bytearray(
        build(
            DhcpPacket(
                op=BOOTREQUEST, xid=7, chaddr=MAC, options={OPT_MESSAGE_TYPE: bytes([DISCOVER]), OPT_OVERLOAD: b"\x01"}
            )
        )
    )
    raw[108:116] = bytes([OPT_CLIENT_ARCH, 2, 0, 9, 255, 0, 0, 0])  # the file field now carries an option
    assert ClientInfo.from_packet(parse(bytes(raw))).arch is Arch.UEFI_X64


GOOD = build(pxe_discover())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "shorter"),
        (GOOD[:239], "shorter"),
        (GOOD[:236] + b"\x00\x00\x00\x00" + GOOD[240:], "magic cookie"),
        (b"\x03" + GOOD[1:], "op 3"),
        (GOOD[:2] + b"\x00" + GOOD[3:], "hardware address length 0"),
        (GOOD[:2] + b"\x11" + GOOD[3:], "hardware address length 17"),
        (GOOD[:240] + bytes([OPT_VENDOR_CLASS, 50]) + b"short", "past the end"),
        (GOOD[:240] + bytes([OPT_VENDOR_CLASS]), "no length byte"),
        (GOOD[:240] + bytes([OPT_MESSAGE_TYPE, 1, 1]), "not terminated"),
        (GOOD + b"\x00" * 5000, "longer"),
    ],
)
def test_malformed_and_truncated_packets_give_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        parse(raw)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=700))
def test_arbitrary_bytes_parse_or_give_a_reason(raw: bytes) -> None:
    with contextlib.suppress(Malformed):
        ClientInfo.from_packet(parse(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_any_option_area_after_a_valid_header_is_handled(tail: bytes) -> None:
    try:
        packet = parse(GOOD[:240] + tail)
    except Malformed:
        return
    assert parse(build(packet)).options == packet.options  # what we read, we write back the same
