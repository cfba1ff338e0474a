"""Boot stream (written by pxe): what the network-boot services saw."""

from __future__ import annotations

import uuid
from enum import StrEnum

from dpm_schemas.base import Event
from dpm_schemas.events.machines import IPv4, Mac


class Arch(StrEnum):
    """Client architecture from DHCP option 93 (RFC 4578 §2.1, IANA processor architecture types)."""

    BIOS_X86 = "bios-x86"
    UEFI_X64 = "uefi-x64"
    UEFI_X64_HTTP = "uefi-x64-http"
    UEFI_ARM64 = "uefi-arm64"
    UNKNOWN = "unknown"


class BootStage(StrEnum):
    ROM = "rom"  # the NIC's PXE ROM asked for a boot file
    IPXE = "ipxe"  # iPXE fetched its script
    DEPLOY = "deploy"  # the deploy environment started


class MachineDiscovered(Event):
    wire_name = "MachineDiscovered"

    mac: Mac
    arch: Arch
    client_uuid: uuid.UUID | None = None


class MachineBooted(Event):
    wire_name = "MachineBooted"

    mac: Mac
    arch: Arch
    client_ip: IPv4 | None = None
    stage: BootStage
