"""Stream ids from natural keys: the same machine always lands on the same stream."""

from __future__ import annotations

import uuid

import pytest

from dpm_schemas import subjects
from dpm_schemas.ids import machine_key, normalize_mac, stream_id


@pytest.mark.parametrize("raw", ["52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef", "525400ABCDEF", " 52:54:00:AB:CD:EF "])
def test_mac_spellings_normalise_to_one(raw: str) -> None:
    assert normalize_mac(raw) == "52:54:00:ab:cd:ef"


@pytest.mark.parametrize(
    "raw", ["", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "52-54:00-ab:cd-ef", "zz:54:00:ab:cd:ef"]
)
def test_malformed_macs_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_mac(raw)


def test_machine_key_is_stable_and_prefers_smbios_uuid() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert machine_key(mac="52-54-00-AB-CD-EF") == machine_key(mac="525400abcdef")
    assert machine_key(mac="52-54-00-AB-CD-EF", smbios_uuid=u) == machine_key(smbios_uuid=u)
    assert stream_id(subjects.MACHINE, u) == f"machine-{u}"


def test_subjects_and_durable_names() -> None:
    assert subjects.event_subject("machine", "MachineRegistered") == "dpm.evt.machine.MachineRegistered"
    assert subjects.durable_name("pxe", "machine-directory") == "pxe-machine-directory"
    with pytest.raises(ValueError):
        subjects.durable_name("pxe", "bad name.with.dots")
