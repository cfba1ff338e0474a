"""What to answer a PXE client (pure): proxyDHCP gives boot information and never an address; full
mode (``full.py``) adds an address to the same boot information.

The PXE ROM gets the iPXE binary for its architecture over TFTP, UEFI HTTP boot firmware (option 60
"HTTPClient", architecture 16) the URL of the iPXE EFI binary on pxe's HTTP port; iPXE itself (recognised by option
77/175, so it is not sent back to the ROM stage) gets the URL of its per-machine script. Every
ignore has a reason for the log (PXE spec 2.1; RFC 4578; Intel PXE proxyDHCP behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from dpm_netproto.dhcp import (
    ACK,
    DISCOVER,
    OFFER,
    OPT_BOOTFILE,
    OPT_CLIENT_UUID,
    OPT_MESSAGE_TYPE,
    OPT_SERVER_ID,
    OPT_VENDOR_CLASS,
    OPT_VENDOR_SPECIFIC,
    REQUEST,
    DhcpPacket,
    reply_to,
)
from dpm_netproto.pxeclient import ClientInfo
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_schemas.events.boot import Arch, DhcpMode

DEFAULT_BOOT_FILES = {
    Arch.BIOS_X86: "undionly.kpxe",
    Arch.UEFI_X64: "ipxe.efi",
    Arch.UEFI_ARM64: "ipxe-arm64.efi",
}

# UEFI HTTP boot architectures and the TFTP architecture whose iPXE binary they are served by URL
HTTP_LOADERS = {Arch.UEFI_X64_HTTP: Arch.UEFI_X64}

# PXE vendor options (option 43): sub-option 6, discovery control = 8: use the boot file name given,
# skip boot-server discovery -- otherwise ROMs wait for menus and multicast discovery first.
PXE_DISCOVERY_SKIP = bytes((6, 1, 8, 255))


@dataclass(frozen=True)
class BootConfig:
    mode: DhcpMode
    server_ip: IPv4Address | None  # our address on the boot network: option 54, siaddr (TFTP)
    script_url: str  # iPXE script URL with {mac}, e.g. http://10.0.0.1:26502/boot/{mac}.ipxe
    boot_files: dict[Arch, str] = field(default_factory=lambda: dict(DEFAULT_BOOT_FILES))
    pools: tuple[Pool, ...] = ()  # full mode only
    files_url: str | None = None  # where pxe serves the boot files over HTTP (UEFI HTTP boot), no slash at end


@dataclass(frozen=True)
class Ignore:
    reason: str


def boot_file(info: ClientInfo, config: BootConfig) -> str | Ignore:
    """The iPXE binary for a ROM of this architecture, or the per-machine script URL for iPXE itself."""
    if info.is_ipxe:
        url = config.script_url.format(mac=info.mac, arch=info.arch.value)
        if info.client_uuid is not None and "?" in url:  # lets the script request name the SMBIOS UUID
            url += f"&uuid={info.client_uuid}"
        return url
    if info.is_http:
        return _http_loader(info, config)
    if (name := config.boot_files.get(info.arch)) is not None:
        return name
    return Ignore(f"no boot file for architecture {info.arch_code} ({info.arch.value})")


def _http_loader(info: ClientInfo, config: BootConfig) -> str | Ignore:
    """The absolute URL of the iPXE EFI binary for a UEFI HTTP boot client (its boot file is a URI)."""
    loader = HTTP_LOADERS.get(info.arch)
    name = config.boot_files.get(loader) if loader is not None else None
    if name is None:
        return Ignore(f"no HTTP boot file for architecture {info.arch_code} ({info.arch.value})")
    if config.files_url is None:
        return Ignore("UEFI HTTP boot needs pxe's HTTP URL for its boot files (DPM_PXE_HTTP_URL)")
    return f"{config.files_url}/{name}"


def boot_reply(
    request: DhcpPacket, server_ip: IPv4Address, file: str, kind: int, *, http: bool = False, **fields: Any
) -> DhcpPacket:
    """A reply carrying boot information (PXE spec 2.1); ``fields`` add an address in full mode. To a
    UEFI HTTP boot client (``http``) it says "HTTPClient" (the firmware ignores the offer otherwise)
    and carries no PXE discovery options."""
    options = {
        OPT_MESSAGE_TYPE: bytes([kind]),
        OPT_SERVER_ID: server_ip.packed,
        # without PXEClient iPXE waits ~2 s for a "proper" proxyDHCP answer
        OPT_VENDOR_CLASS: b"HTTPClient" if http else b"PXEClient",
    }
    if not http:
        options[OPT_VENDOR_SPECIFIC] = PXE_DISCOVERY_SKIP
    options.update(fields.pop("options", {}))
    if len(file) > 127:  # longer than the BOOTP file field: option 67 carries it (iPXE reads it first)
        options[OPT_BOOTFILE] = file.encode("ascii")
        file = ""
    if OPT_CLIENT_UUID in request.options:
        options[OPT_CLIENT_UUID] = request.options[OPT_CLIENT_UUID]
    return reply_to(request, siaddr=server_ip, file=file.encode("ascii")[:127], options=options, **fields)


def reply(request: DhcpPacket, config: BootConfig, *, on_4011: bool = False) -> DhcpPacket | Ignore:
    """The proxyDHCP answer; 4011 is answered like this in full mode too (ROMs that ask there)."""
    if config.mode is DhcpMode.OFF:
        return Ignore("DHCP mode is off")
    if config.server_ip is None:
        return Ignore("no server IP: set DPM_PXE_SERVER_IP, DPM_PXE_DHCP_INTERFACE or the boot settings' server_ip")
    info = ClientInfo.from_packet(request)
    wanted = REQUEST if on_4011 else DISCOVER
    if info.message_type != wanted:
        return Ignore(f"message type {info.message_type} on {'4011' if on_4011 else '67'}; only {wanted} is answered")
    if not info.is_pxe:
        return Ignore(f"not a PXE client (option 60 is {info.vendor_class!r})")
    file = boot_file(info, config)
    if isinstance(file, Ignore):
        return file
    return boot_reply(request, config.server_ip, file, ACK if on_4011 else OFFER, http=info.is_http)


def destination(request: DhcpPacket, source: tuple[str, int], *, on_4011: bool) -> tuple[str, int]:
    """Where the reply goes (RFC 2131 §4.1): back to 4011's sender, via a relay, or broadcast."""
    if on_4011:
        return source
    if int(request.giaddr):
        return (str(request.giaddr), 67)
    if request.broadcast or not int(request.ciaddr):
        return ("255.255.255.255", 68)
    return (str(request.ciaddr), 68)
