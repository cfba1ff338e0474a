"""The machine list's pure fold: registrations, boots from any NIC, presence, renames, deletion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from dpm_api.domain.view import MachineRow, evolve, new_machine_id, target_of
from dpm_schemas import Metadata, RecordedEvent
from dpm_schemas.events import (
    MachineBooted,
    MachineCameOnline,
    MachineDeleted,
    MachineRegistered,
    MachineRenamed,
    MachineWentOffline,
    Probe,
)

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
MID = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
MACS = ("52:54:00:00:00:01", "52:54:00:00:00:02")


def rec(event, position: int) -> RecordedEvent:
    return RecordedEvent(
        uuid.uuid4(),
        event.wire_name,
        1,
        "s",
        position,
        position,
        T0 + timedelta(seconds=position),
        Metadata.unread(),
        event,
    )


def fold(*events) -> MachineRow | None:
    row: MachineRow | None = None
    by_mac: dict[str, uuid.UUID] = {}
    for position, event in enumerate(events, start=1):
        if target_of(event, by_mac) is None:
            continue
        row = evolve(event, row, rec(event, position))
        by_mac = {mac: MID for mac in row.macs} if row else {}
    return row


REGISTERED = MachineRegistered(machine_id=MID, name="web-01", macs=MACS, ip="10.0.0.5")


def test_registration_creates_the_row() -> None:
    row = fold(REGISTERED)
    assert row is not None
    assert (row.name, row.macs, row.ip, row.group_name, row.online, row.boot_count) == (
        "web-01",
        MACS,
        "10.0.0.5",
        "new-machines",
        False,
        0,
    )
    assert row.registered_at == T0 + timedelta(seconds=1) and row.position == 1


def test_a_boot_from_the_second_nic_lands_on_the_same_machine_and_updates_its_address() -> None:
    boot = MachineBooted(mac=MACS[1], arch="uefi-x64", client_ip="10.0.0.9", stage="ipxe")
    row = fold(REGISTERED, boot, boot)
    assert row is not None
    assert (row.boot_count, row.last_boot_arch, row.last_boot_stage, row.ip) == (2, "uefi-x64", "ipxe", "10.0.0.9")


def test_boots_of_unknown_macs_and_foreign_events_change_nothing() -> None:
    stranger = MachineBooted(mac="52:54:00:99:99:99", arch="bios-x86", stage="rom")
    assert fold(REGISTERED, stranger, Probe(writer=0, seq=0)) == fold(REGISTERED)


def test_presence_rename_and_deletion() -> None:
    row = fold(REGISTERED, MachineCameOnline(machine_id=MID, agent_version="0.1"))
    assert row is not None and row.online
    row = fold(
        REGISTERED,
        MachineCameOnline(machine_id=MID, agent_version="0.1"),
        MachineWentOffline(machine_id=MID, reason="timeout"),
        MachineRenamed(machine_id=MID, name="db-01"),
    )
    assert row is not None and not row.online and row.name == "db-01"
    assert fold(REGISTERED, MachineDeleted(machine_id=MID)) is None


def test_events_about_a_deleted_or_unknown_machine_do_not_resurrect_it() -> None:
    assert fold(MachineRenamed(machine_id=MID, name="x")) is None
    assert (
        fold(REGISTERED, MachineDeleted(machine_id=MID), MachineCameOnline(machine_id=MID, agent_version="1")) is None
    )


def test_machine_id_derives_from_smbios_uuid_first_then_the_first_mac() -> None:
    smbios = uuid.uuid4()
    assert new_machine_id(MACS, smbios) == new_machine_id(MACS[::-1], smbios)
    assert new_machine_id(MACS, None) != new_machine_id(MACS[::-1], None)
