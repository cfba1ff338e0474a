"""Machine stream (written by api): registration, edits, deletion; and the power commands."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated

from pydantic import Field, StringConstraints

from dpm_schemas.base import Command, Event
from dpm_schemas.text import Label, LongText, Text

# MACs in events are canonical (aa:bb:cc:dd:ee:ff); edges normalise input with ids.normalize_mac first.
# A pattern is checked inside pydantic-core, so decoding the log's bulk (boot events) stays fast.
Mac = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")]
# Dotted-quad IPv4 checked by a pattern (validated in pydantic-core, not Python's ipaddress): boot events
# are the bulk of the log, and a rebuild decodes every one of them.
IPv4 = Annotated[
    str, StringConstraints(pattern=r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$")
]
MachineName = Annotated[Text, Field(min_length=1, max_length=253)]


class MachineRegistered(Event):
    wire_name = "MachineRegistered"

    machine_id: uuid.UUID
    name: MachineName
    macs: Annotated[tuple[Mac, ...], Field(min_length=1)]
    smbios_uuid: uuid.UUID | None = None
    ip: IPv4Address | IPv6Address | None = None
    group: Label = "new-machines"
    os_type: Label | None = None


class MachineEdited(Event):
    """A machine's editable fields after an edit (the whole new state, so replays need no merging)."""

    wire_name = "MachineEdited"

    machine_id: uuid.UUID
    name: MachineName
    macs: Annotated[tuple[Mac, ...], Field(min_length=1)]
    smbios_uuid: uuid.UUID | None = None
    ip: IPv4Address | IPv6Address | None = None
    group: Label
    os_type: Label | None = None


class IdentityClaimed(Event):
    """A MAC or SMBIOS UUID now belongs to a machine. One stream per identity (``identity-mac:...``),
    appended with an expected version, makes "no two machines share a MAC" a log guarantee."""

    wire_name = "IdentityClaimed"

    identity: Label  # "mac:aa:bb:cc:dd:ee:ff" or "smbios:<uuid>"
    machine_id: uuid.UUID


class IdentityReleased(Event):
    wire_name = "IdentityReleased"

    identity: Label
    machine_id: uuid.UUID


class MachineRenamed(Event):
    wire_name = "MachineRenamed"

    machine_id: uuid.UUID
    name: MachineName


class MachineDeleted(Event):
    wire_name = "MachineDeleted"

    machine_id: uuid.UUID


class PowerOn(Command):
    wire_name = "PowerOn"

    machine_id: uuid.UUID


class PowerOnRequested(Event):
    """An operator (or a schedule) asked for a machine to be powered on; the scheduler acts on it."""

    wire_name = "PowerOnRequested"

    machine_id: uuid.UUID


class PowerOnSent(Event):
    """The scheduler sent the power-on (stream ``power-<machine>``); verification comes separately."""

    wire_name = "PowerOnSent"

    machine_id: uuid.UUID
    driver: Label
    macs: tuple[Mac, ...]
    destination: Label  # e.g. "192.168.0.255:5561"


class PowerOnSucceeded(Event):
    """The machine answered after a power-on: its agent came online, or it network-booted."""

    wire_name = "PowerOnSucceeded"

    machine_id: uuid.UUID
    via: Label  # "agent" or "netboot"


class PowerOnFailed(Event):
    """Nothing answered within the remote power-on timeout: the machine is in remote-power-on error."""

    wire_name = "PowerOnFailed"

    machine_id: uuid.UUID
    code: Label
    reason: LongText


class RebootMachine(Command):
    wire_name = "RebootMachine"

    machine_id: uuid.UUID


class MachineStatusCleared(Event):
    """An operator cleared a machine's error (failed execution, remote power-on error): it may take a
    scenario again (seed catalog §3.3, "error clear" and "bulk status clear")."""

    wire_name = "MachineStatusCleared"

    machine_id: uuid.UUID
