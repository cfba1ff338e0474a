"""Agent stream (written by agent-gateway): enrolment, presence transitions, addresses, inventory --
never heartbeats, which stay transient. Token revocation is an operator action on the machine stream."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from dpm_schemas.base import Event
from dpm_schemas.events.machines import Mac
from dpm_schemas.text import Label, LongText, Text


class EnrolmentTokenIssued(Event):
    """An admin issued an enrolment token (stream ``enrolment-<id>``, written by api): good for
    ``uses`` enrolments until ``expires_at``. Only its SHA-256 is recorded (it is 256-bit random).

    Bound to ``machine_id``, it enrols only that machine, and may replace its agent token (or undo a
    revocation): the explicit admin step for a re-imaged machine. Unbound, it enrols only machines
    without an agent token that were never revoked (DESIGN.md §8: no identity takeover)."""

    wire_name = "EnrolmentTokenIssued"

    token_id: uuid.UUID
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    expires_at: datetime
    uses: int = Field(ge=1, le=100_000)
    machine_id: uuid.UUID | None = None


class AgentEnrolled(Event):
    """A machine's agent obtained its per-machine token (stored only as a SHA-256 hash)."""

    wire_name = "AgentEnrolled"

    machine_id: uuid.UUID
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    hostname: Annotated[Text, Field(max_length=253)]
    # what the agent said about its machine; with ``registered`` False, the api registers it into
    # new-machines (automatic registration through the agent, for networks without PXE)
    macs: tuple[Mac, ...] = ()
    smbios_uuid: uuid.UUID | None = None
    registered: bool = True
    # the audit: which enrolment token (None: the gateway's shared secret), and whether it replaced
    # the machine's previous agent token (a bound token's re-enrolment; its sessions are closed)
    enrolment_token_id: uuid.UUID | None = None
    replaced: bool = False


class MachineCameOnline(Event):
    wire_name = "MachineCameOnline"

    machine_id: uuid.UUID
    agent_version: Label


class AgentVersionChanged(Event):
    """A machine already online said hello with another agent version than before: its agent was
    upgraded (or replaced) and restarted within the heartbeat timeout, so no MachineCameOnline. The
    updater waits for this after delivering the agent's own package."""

    wire_name = "AgentVersionChanged"

    machine_id: uuid.UUID
    agent_version: Label
    previous: Label


class MachineWentOffline(Event):
    wire_name = "MachineWentOffline"

    machine_id: uuid.UUID
    reason: LongText


class MachineAddressesChanged(Event):
    wire_name = "MachineAddressesChanged"

    machine_id: uuid.UUID
    ips: tuple[Label, ...]


class InventoryReported(Event):
    """The OS and installed packages, appended only when they differ from the last report."""

    wire_name = "InventoryReported"

    machine_id: uuid.UUID
    os: Text
    kernel: Text
    packages: tuple[Text, ...]  # "name=version", sorted
    digest: Label


class AgentCommandIssued(Event):
    """An operator sent a command to a machine's agent (stream ``command-<machine>``, written by api)."""

    wire_name = "AgentCommandIssued"

    command_id: uuid.UUID
    machine_id: uuid.UUID
    action: Label
    path: Annotated[Text, Field(max_length=4096)] | None = None
    size: int = 0


class AgentCommandCompleted(Event):
    wire_name = "AgentCommandCompleted"

    command_id: uuid.UUID
    machine_id: uuid.UUID
    ok: bool
    code: Label = ""
    message: LongText = ""


class AgentTokenRevoked(Event):
    """An operator revoked a machine's agent token (machine stream, written by api)."""

    wire_name = "AgentTokenRevoked"

    machine_id: uuid.UUID
