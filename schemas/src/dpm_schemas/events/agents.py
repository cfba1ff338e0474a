"""Agent stream (written by agent-gateway): enrolment, presence transitions, addresses, inventory --
never heartbeats, which stay transient. Token revocation is an operator action on the machine stream."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from dpm_schemas.base import Event
from dpm_schemas.events.machines import Mac


class EnrolmentTokenIssued(Event):
    """An admin issued an enrolment token (stream ``enrolment-<id>``, written by api): good for
    ``uses`` enrolments until ``expires_at``. Only its SHA-256 is recorded (it is 256-bit random)."""

    wire_name = "EnrolmentTokenIssued"

    token_id: uuid.UUID
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    expires_at: datetime
    uses: int = Field(ge=1, le=100_000)


class AgentEnrolled(Event):
    """A machine's agent obtained its per-machine token (stored only as a SHA-256 hash)."""

    wire_name = "AgentEnrolled"

    machine_id: uuid.UUID
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    hostname: str
    # what the agent said about its machine; with ``registered`` False, the api registers it into
    # new-machines (automatic registration through the agent, for networks without PXE)
    macs: tuple[Mac, ...] = ()
    smbios_uuid: uuid.UUID | None = None
    registered: bool = True


class MachineCameOnline(Event):
    wire_name = "MachineCameOnline"

    machine_id: uuid.UUID
    agent_version: str


class MachineWentOffline(Event):
    wire_name = "MachineWentOffline"

    machine_id: uuid.UUID
    reason: str


class MachineAddressesChanged(Event):
    wire_name = "MachineAddressesChanged"

    machine_id: uuid.UUID
    ips: tuple[str, ...]


class InventoryReported(Event):
    """The OS and installed packages, appended only when they differ from the last report."""

    wire_name = "InventoryReported"

    machine_id: uuid.UUID
    os: str
    kernel: str
    packages: tuple[str, ...]  # "name=version", sorted
    digest: str


class AgentCommandIssued(Event):
    """An operator sent a command to a machine's agent (stream ``command-<machine>``, written by api)."""

    wire_name = "AgentCommandIssued"

    command_id: uuid.UUID
    machine_id: uuid.UUID
    action: str
    path: str | None = None
    size: int = 0


class AgentCommandCompleted(Event):
    wire_name = "AgentCommandCompleted"

    command_id: uuid.UUID
    machine_id: uuid.UUID
    ok: bool
    code: str = ""
    message: str = ""


class AgentTokenRevoked(Event):
    """An operator revoked a machine's agent token (machine stream, written by api)."""

    wire_name = "AgentTokenRevoked"

    machine_id: uuid.UUID
