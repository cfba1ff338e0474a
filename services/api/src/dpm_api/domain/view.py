"""The machine list read model as pure functions: ``evolve(event, row, rec) -> row``. No I/O here.

The projection adapter loads the rows a batch touches, folds the batch through ``evolve`` and writes
back what changed -- the same code path live and on rebuild, so a rebuild equals the live table.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import singledispatch
from typing import Any, NamedTuple

from dpm_schemas.base import Event
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    AgentVersionChanged,
    MachineAddressesChanged,
    MachineBooted,
    MachineCameOnline,
    MachineDeleted,
    MachineEdited,
    MachineRegistered,
    MachineRenamed,
    MachineStatusCleared,
    MachineWentOffline,
    PowerOnFailed,
    PowerOnSucceeded,
)
from dpm_schemas.ids import machine_key

MACHINE_ID_EVENTS = (
    MachineStatusCleared,
    PowerOnFailed,
    PowerOnSucceeded,
    MachineAddressesChanged,
    MachineRegistered,
    MachineEdited,
    MachineRenamed,
    MachineDeleted,
    MachineCameOnline,
    MachineWentOffline,
    AgentVersionChanged,
)
# every event the machine list reads: those naming a machine, and boots (matched by MAC)
EVENT_TYPES = tuple(cls.wire_name for cls in (*MACHINE_ID_EVENTS, MachineBooted))


class MachineRow(NamedTuple):
    """One row of ``api.machines``; a NamedTuple because a rebuild makes one per event (cheap ``_replace``)."""

    machine_id: uuid.UUID
    name: str
    macs: tuple[str, ...]
    smbios_uuid: uuid.UUID | None
    ip: str | None
    group_name: str
    os_type: str | None
    registered_at: datetime
    online: bool = False
    last_boot_at: datetime | None = None
    last_boot_arch: str | None = None
    last_boot_stage: str | None = None
    boot_count: int = 0
    agent_version: str | None = None
    power_error: str | None = None  # the code of the last failed power-on, until the machine answers
    position: int = 0


def new_machine_id(macs: tuple[str, ...], smbios_uuid: uuid.UUID | None) -> uuid.UUID:
    """A machine's id derives from its natural key, so re-registering the same box finds the same stream."""
    return machine_key(mac=macs[0] if macs else None, smbios_uuid=smbios_uuid)


def target_of(event: Event, by_mac: Mapping[str, uuid.UUID]) -> uuid.UUID | None:
    """Which machine an event is about: by id, or by MAC for boot events."""
    if isinstance(event, MachineBooted):
        return by_mac.get(event.mac)
    if isinstance(event, MACHINE_ID_EVENTS):
        return event.machine_id
    return None


@singledispatch
def evolve(event: Event, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return row


def _editable(event: MachineRegistered | MachineEdited) -> dict[str, Any]:
    """The row fields an operator sets, the same for a registration and an edit."""
    return {
        "name": event.name,
        "macs": tuple(event.macs),
        "smbios_uuid": event.smbios_uuid,
        "ip": str(event.ip) if event.ip else None,
        "group_name": event.group,
        "os_type": event.os_type,
    }


@evolve.register
def _(event: MachineRegistered, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return MachineRow(
        machine_id=event.machine_id, registered_at=rec.occurred_at, position=rec.position, **_editable(event)
    )


@evolve.register
def _(event: MachineEdited, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    if row is None:
        return None
    return row._replace(position=rec.position, **_editable(event))


@evolve.register
def _(event: MachineStatusCleared, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return row._replace(power_error=None, position=rec.position) if row else None


@evolve.register
def _(event: MachineAddressesChanged, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    """The agent reported new addresses: the record follows (first IPv4, else first address)."""
    if row is None or not event.ips:
        return row
    ipv4 = [ip for ip in event.ips if ":" not in ip]
    return row._replace(ip=(ipv4 or list(event.ips))[0], position=rec.position)


@evolve.register
def _(event: MachineRenamed, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return row._replace(name=event.name, position=rec.position) if row else None


@evolve.register
def _(event: MachineDeleted, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return None


@evolve.register
def _(event: MachineBooted, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    if row is None:
        return None
    return row._replace(
        last_boot_at=rec.occurred_at,
        last_boot_arch=event.arch.value,
        last_boot_stage=event.stage.value,
        boot_count=row.boot_count + 1,
        ip=str(event.client_ip) if event.client_ip else row.ip,
        position=rec.position,
    )


@evolve.register
def _(event: MachineCameOnline, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    if row is None:
        return None
    return row._replace(online=True, agent_version=event.agent_version, power_error=None, position=rec.position)


@evolve.register
def _(event: AgentVersionChanged, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return row._replace(agent_version=event.agent_version, position=rec.position) if row else None


@evolve.register
def _(event: PowerOnFailed, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return row._replace(power_error=event.code, position=rec.position) if row else None


@evolve.register
def _(event: PowerOnSucceeded, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return row._replace(power_error=None, position=rec.position) if row else None


@evolve.register
def _(event: MachineWentOffline, row: MachineRow | None, rec: RecordedEvent) -> MachineRow | None:
    return row._replace(online=False, position=rec.position) if row else None
