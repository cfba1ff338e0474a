"""The proxyDHCP decision: boot information without an address, per architecture, iPXE to its script;
off mode and non-PXE clients ignored with a reason."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address

import pytest

from dpm_netproto.dhcp import (
    ACK,
    BOOTREQUEST,
    DISCOVER,
    OFFER,
    OPT_BOOTFILE,
    OPT_CLIENT_ARCH,
    OPT_MESSAGE_TYPE,
    OPT_USER_CLASS,
    OPT_VENDOR_CLASS,
    REQUEST,
    DhcpPacket,
    build,
    parse,
)
from dpm_pxe.domain.dhcp.proxy import BootConfig, Ignore, destination, reply
from dpm_schemas.events.boot import DhcpMode as Mode

SERVER = IPv4Address("10.0.0.1")
CONFIG = BootConfig(mode=Mode.PROXY, server_ip=SERVER, script_url="http://10.0.0.1:26502/boot/{mac}.ipxe")
MAC = bytes.fromhex("525400000001")


def request(arch: int = 0, kind: int = DISCOVER, vendor: bytes = b"PXEClient:Arch:00000", **extra: bytes) -> DhcpPacket:
    options = {OPT_MESSAGE_TYPE: bytes([kind]), OPT_CLIENT_ARCH: arch.to_bytes(2, "big"), OPT_VENDOR_CLASS: vendor}
    options.update({int(k[1:]): v for k, v in extra.items()})
    return parse(build(DhcpPacket(op=BOOTREQUEST, xid=99, chaddr=MAC, flags=0x8000, options=options)))


@pytest.mark.parametrize(
    ("arch", "boot_file"), [(0, b"undionly.kpxe"), (7, b"ipxe.efi"), (9, b"ipxe.efi"), (11, b"ipxe-arm64.efi")]
)
def test_proxy_offer_carries_boot_information_and_no_address(arch: int, boot_file: bytes) -> None:
    offer = reply(request(arch), CONFIG)
    assert not isinstance(offer, Ignore)
    packet = parse(build(offer))
    assert packet.message_type == OFFER and int(packet.yiaddr) == 0 and packet.siaddr == SERVER
    assert packet.file == boot_file and packet.options[OPT_VENDOR_CLASS] == b"PXEClient" and packet.xid == 99


def test_ipxe_gets_its_script_url_not_the_rom_binary_again() -> None:
    offer = reply(request(0, o77=b"iPXE"), CONFIG)
    assert not isinstance(offer, Ignore)
    assert offer.file == b"http://10.0.0.1:26502/boot/52:54:00:00:00:01.ipxe"


def test_a_script_url_longer_than_the_file_field_goes_in_option_67_with_the_client_uuid() -> None:
    config = BootConfig(
        mode=Mode.PROXY,
        server_ip=SERVER,
        script_url="http://pxe-server.boot-network.lab.internal:26502/boot/{mac}.ipxe?arch={arch}",
    )
    smbios = uuid.UUID("e99828ab-26df-417c-a181-183df6af1877")
    offer = reply(request(7, o77=b"iPXE", o97=b"\x00" + smbios.bytes_le), config)
    assert not isinstance(offer, Ignore) and offer.file == b""
    url = parse(build(offer)).options[OPT_BOOTFILE].decode()
    assert (
        url
        == f"http://pxe-server.boot-network.lab.internal:26502/boot/52:54:00:00:00:01.ipxe?arch=uefi-x64&uuid={smbios}"
    )


def test_port_4011_requests_get_an_ack_sent_back_to_the_sender() -> None:
    ack = reply(request(7, kind=REQUEST), CONFIG, on_4011=True)
    assert not isinstance(ack, Ignore) and ack.options[OPT_MESSAGE_TYPE] == bytes([ACK])
    assert destination(request(7, kind=REQUEST), ("10.0.0.50", 4011), on_4011=True) == ("10.0.0.50", 4011)
    assert destination(request(0), ("0.0.0.0", 68), on_4011=False) == ("255.255.255.255", 68)


@pytest.mark.parametrize(
    ("req", "config", "reason"),
    [
        (request(0), BootConfig(Mode.OFF, SERVER, ""), "off"),
        (request(0, vendor=b"MSFT 5.0"), CONFIG, "not a PXE client"),
        (request(2), CONFIG, "no boot file for architecture 2"),
        (request(0, kind=REQUEST), CONFIG, "only 1 is answered"),
    ],
)
def test_ignored_with_a_reason(req: DhcpPacket, config: BootConfig, reason: str) -> None:
    result = reply(req, config)
    assert isinstance(result, Ignore) and reason in result.reason
    assert OPT_USER_CLASS == 77
