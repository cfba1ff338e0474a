"""Machine stream (written by api): registration, edits, deletion; and the power commands."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated

from pydantic import AfterValidator, Field

from dpm_schemas.base import Command, Event
from dpm_schemas.ids import normalize_mac

Mac = Annotated[str, AfterValidator(normalize_mac)]
MachineName = Annotated[str, Field(min_length=1, max_length=253)]


class MachineRegistered(Event):
    wire_name = "MachineRegistered"

    machine_id: uuid.UUID
    name: MachineName
    macs: Annotated[tuple[Mac, ...], Field(min_length=1)]
    smbios_uuid: uuid.UUID | None = None
    ip: IPv4Address | IPv6Address | None = None
    group: str = "new-machines"
    os_type: str | None = None


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


class RebootMachine(Command):
    wire_name = "RebootMachine"

    machine_id: uuid.UUID
