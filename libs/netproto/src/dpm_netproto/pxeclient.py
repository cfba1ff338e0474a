"""What a DHCP request says about the client: PXE or not, architecture, UUID, iPXE (RFC 4578)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from dpm_netproto.dhcp import (
    OPT_CLIENT_ARCH,
    OPT_CLIENT_UUID,
    OPT_IPXE,
    OPT_USER_CLASS,
    OPT_VENDOR_CLASS,
    DhcpPacket,
)
from dpm_schemas.events.boot import Arch

# RFC 4578 §2.1 and the IANA "Processor Architecture Types" registry
ARCHITECTURES: dict[int, Arch] = {
    0: Arch.BIOS_X86,
    6: Arch.UEFI_X64,  # EFI IA32: served the x64 loader is wrong, but such firmware is very rare; see note
    7: Arch.UEFI_X64,  # EFI BC (byte code); in practice x86-64 firmware
    9: Arch.UEFI_X64,  # EFI x86-64
    11: Arch.UEFI_ARM64,
    16: Arch.UEFI_X64_HTTP,  # EFI x86-64 HTTP boot
}


@dataclass(frozen=True)
class ClientInfo:
    mac: str
    message_type: int | None
    vendor_class: str
    arch: Arch
    arch_code: int | None
    client_uuid: uuid.UUID | None
    is_ipxe: bool

    @property
    def is_pxe(self) -> bool:
        """A network-boot client: option 60 starts with PXEClient (or HTTPClient for UEFI HTTP boot)."""
        return self.vendor_class.startswith(("PXEClient", "HTTPClient"))

    @property
    def is_http(self) -> bool:
        """UEFI HTTP boot (UEFI spec 2.10 §24.7): the firmware fetches its loader by URL, not over TFTP,
        and takes only an offer whose option 60 is "HTTPClient" as carrying that URL."""
        return self.vendor_class.startswith("HTTPClient")

    @classmethod
    def from_packet(cls, packet: DhcpPacket) -> ClientInfo:
        vendor = packet.options.get(OPT_VENDOR_CLASS, b"").decode("ascii", "replace")
        raw_arch = packet.options.get(OPT_CLIENT_ARCH, b"")
        arch_code = int.from_bytes(raw_arch[:2], "big") if len(raw_arch) >= 2 else None
        raw_uuid = packet.options.get(OPT_CLIENT_UUID, b"")
        client_uuid = None
        if len(raw_uuid) == 17 and raw_uuid[0] == 0:  # type 0 + 16-byte GUID (RFC 4578 §2.3)
            client_uuid = uuid.UUID(bytes_le=raw_uuid[1:])  # firmware sends the SMBIOS (mixed-endian) form
        user_class = packet.options.get(OPT_USER_CLASS, b"")
        return cls(
            mac=packet.mac,
            message_type=packet.message_type,
            vendor_class=vendor,
            arch=ARCHITECTURES.get(arch_code, Arch.UNKNOWN) if arch_code is not None else Arch.BIOS_X86,
            arch_code=arch_code,
            client_uuid=client_uuid,
            is_ipxe=b"iPXE" in user_class or OPT_IPXE in packet.options,
        )
