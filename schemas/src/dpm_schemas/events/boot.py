"""Network boot: boot-<mac> streams (pxe), setting-boot (api), execution-<id> (the scheduler).

What the network-boot services saw (MachineDiscovered, MachineBooted), how they must answer
(BootSettingsChanged), and which machines must boot the deploy environment next (NetbootRequested
until NetbootCleared) -- or could not, its files missing (DeployBootUnavailable). pxe decides every
answer from these alone, so a replica restart or a rebuild gives the same answers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from dpm_schemas.base import Event
from dpm_schemas.events.machines import IPv4, Mac
from dpm_schemas.text import Label, LongText, Text

SETTINGS_KEY = "boot"  # BootSettingsChanged lives on stream setting-boot (written by api)


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


class DhcpMode(StrEnum):
    PROXY = "proxy"  # another server gives addresses; dpm adds boot information (67 and 4011)
    FULL = "full"  # dpm is the DHCP server of its ranges (leases persisted)
    OFF = "off"  # no DHCP answers at all: boot media reach the HTTP endpoint instead


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


class DhcpRange(BaseModel):
    """One address pool of full mode: [start, end] inside ``subnet`` with its router and DNS servers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: IPv4
    end: IPv4
    subnet: Annotated[str, StringConstraints(max_length=18, pattern=r"^[0-9.]+/\d{1,2}$")]
    router: IPv4 | None = None
    dns: tuple[IPv4, ...] = ()
    lease_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = 3600


class BootSettingsChanged(Event):
    """The whole boot configuration after a change (no merging on replay). pxe applies it per packet."""

    wire_name = "BootSettingsChanged"

    mode: DhcpMode
    server_ip: IPv4 | None = None  # our address on the boot network; None = the pxe service's own setting
    ranges: tuple[DhcpRange, ...] = ()
    deploy_kernel: Text = "deploy/vmlinuz"  # paths under the boot root, served over HTTP
    deploy_initrd: Text = "deploy/initrd.img"
    deploy_cmdline: Annotated[Text, Field(max_length=2000)] = "console=ttyS0 quiet"


class NetbootRequested(Event):
    """The machine must boot the deploy environment for this execution on its next network boot."""

    wire_name = "NetbootRequested"

    machine_id: uuid.UUID
    execution_id: uuid.UUID
    expires_at: datetime | None = None


class NetbootCleared(Event):
    """The request is over (the deploy environment started, the execution ended or was cancelled)."""

    wire_name = "NetbootCleared"

    machine_id: uuid.UUID
    execution_id: uuid.UUID
    reason: LongText = ""


class DeployTokenIssued(Event):
    """pxe gave the deploy environment of an execution its token (once per execution); only its SHA-256
    is kept. It is bound to the client pxe gave it to (``client_ip``) and, when ``idle_seconds`` is set,
    every step report renews it until then; it dies with its execution's step."""

    wire_name = "DeployTokenIssued"

    machine_id: uuid.UUID
    execution_id: uuid.UUID
    token_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    expires_at: datetime
    client_ip: IPv4 | None = None  # None (events before issue 12): not bound to an address
    idle_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] | None = None  # None: expires_at is absolute


class DeployBootUnavailable(Event):
    """pxe would have sent this execution's machine into the deploy environment, but its kernel or
    initramfs is missing or empty in the boot directory: it withheld the script (the machine asks again
    later) and the scheduler fails the execution with ``code`` now, not at the no-response timeout."""

    wire_name = "DeployBootUnavailable"

    machine_id: uuid.UUID
    execution_id: uuid.UUID
    mac: Mac
    path: Text  # the file pxe looked for, under DPM_PXE_ROOT
    code: Label
    reason: Annotated[LongText, Field(max_length=1000)]
