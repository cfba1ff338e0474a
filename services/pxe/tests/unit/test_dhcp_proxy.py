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


HTTP_VENDOR = b"HTTPClient:Arch:00016:UNDI:003001"
HTTP_CONFIG = BootConfig(
    mode=Mode.PROXY,
    server_ip=SERVER,
    script_url="http://10.0.0.1:26502/boot/{mac}.ipxe",
    files_url="http://10.0.0.1:26502/files",
)


def test_uefi_http_boot_gets_the_ipxe_efi_url_and_an_httpclient_offer() -> None:
    offer = reply(request(16, vendor=HTTP_VENDOR), HTTP_CONFIG)
    assert not isinstance(offer, Ignore)
    packet = parse(build(offer))
    assert packet.message_type == OFFER and int(packet.yiaddr) == 0
    assert packet.file == b"http://10.0.0.1:26502/files/ipxe.efi"
    assert packet.options[OPT_VENDOR_CLASS] == b"HTTPClient"  # EDK2 ignores a boot URI offered as PXEClient
    assert 43 not in packet.options  # no PXE boot-server discovery for an HTTP client


def test_uefi_http_boot_without_an_http_url_or_loader_is_ignored_with_a_reason() -> None:
    no_url = reply(request(16, vendor=HTTP_VENDOR), CONFIG)
    assert isinstance(no_url, Ignore) and "DPM_PXE_HTTP_URL" in no_url.reason
    arm = reply(request(19, vendor=b"HTTPClient:Arch:00019"), HTTP_CONFIG)
    assert isinstance(arm, Ignore) and "19" in arm.reason


def test_ipxe_loaded_over_http_still_gets_its_script() -> None:
    offer = reply(request(16, vendor=HTTP_VENDOR, o77=b"iPXE"), HTTP_CONFIG)
    assert not isinstance(offer, Ignore)
    assert offer.file == b"http://10.0.0.1:26502/boot/52:54:00:00:00:01.ipxe"
