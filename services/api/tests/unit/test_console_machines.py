"""The machine pages' pure parts: the group tree and its counts, the CSV import's preview (adds,
changes, unchanged, refused rows with codes, and the digest a stale preview is caught by), the disk
drawing's geometry to scale, and the bulk form's reading."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from dpm_api.console import listing, machine_bulk, machine_diff, machine_disks, machine_forms
from dpm_api.domain.view import MachineRow
from dpm_schemas.errors import DpmError

HEADER = "name,macs,smbios_uuid,ip,group,os_type\n"


def _row(name: str, mac: str, ip: str | None = None, group: str = "lab") -> MachineRow:
    return MachineRow(uuid.uuid4(), name, (mac,), None, ip, group, None, datetime(2026, 1, 1, tzinfo=UTC))


def test_the_group_tree_nests_on_dots_and_counts_below() -> None:
    tree = listing.group_tree(["site", "site.a", "site.b.x", "lab"], {"site.a": 3, "site.b.x": 2, "lab": 1, "gone": 4})
    assert [n.name for n in tree] == ["gone", "lab", "site"]
    site = tree[2]
    assert (site.count, site.total, site.real) == (0, 5, True)
    a, b = site.children
    assert (a.label, a.total, b.label, b.real, b.total) == ("a", 3, "b", False, 2)  # b: only a prefix
    assert b.children[0].name == "site.b.x" and b.children[0].real
    assert tree[0].real and tree[0].total == 4  # machines whose group has no definition still show


def test_a_name_with_an_empty_part_is_one_node() -> None:
    (node,) = listing.group_tree(["a..b"], {})
    assert node.name == node.label == "a..b" and node.children == []


def test_the_preview_shows_adds_changes_unchanged_and_refusals() -> None:
    old = _row("pc-1", "52:54:00:00:00:01", "10.0.0.1")
    same = _row("pc-2", "52:54:00:00:00:02")
    text = HEADER + (
        "pc-new,52:54:00:00:00:09,,,lab,\n"
        "pc-1,52:54:00:00:00:01,,10.0.0.99,lab,\n"
        "pc-2,52:54:00:00:00:02,,,lab,\n"
        "bad,zz,,,lab,\n"
        "nogroup,52:54:00:00:00:0a,,,elsewhere,\n"
        "pc-2,52:54:00:00:00:0b,,,lab,\n"  # another machine holds the name
    )
    shown = machine_diff.preview(text, [old, same], {"lab"})
    assert [s.name for s in shown.added] == ["pc-new"]
    assert [(c.name, c.changes) for c in shown.changed] == [("pc-1", (("ip", "10.0.0.1", "10.0.0.99"),))]
    assert shown.unchanged == [(4, "pc-2")]
    assert [(r.line, r.code) for r in shown.refused] == [(5, "DPM-E110"), (6, "DPM-E110"), (7, "DPM-E110")]
    # the group's own column (1-based, as the header has it) and the value in plain quotes, no repr
    assert shown.refused[1].reason == "column 5 (group): no group named “elsewhere”"
    assert shown.refused[0].reason == "column 2 (macs): “zz” is not a MAC address"
    accepted = shown.accepted_csv().splitlines()
    assert accepted[0] == HEADER.strip() and [line.split(",")[0] for line in accepted[1:]] == ["pc-new", "pc-1", "pc-2"]


def test_the_digest_changes_with_the_fleet_and_not_otherwise() -> None:
    old = _row("pc-1", "52:54:00:00:00:01", "10.0.0.1")
    text = HEADER + "pc-1,52:54:00:00:00:01,,10.0.0.2,lab,\n"
    first = machine_diff.preview(text, [old], {"lab"}).digest()
    assert machine_diff.preview(text, [old], {"lab"}).digest() == first
    moved = old._replace(ip="10.0.0.3")
    assert machine_diff.preview(text, [moved], {"lab"}).digest() != first


def test_a_malformed_header_refuses_the_whole_file() -> None:
    with pytest.raises(DpmError) as caught:
        machine_diff.preview("name,colour\nx,red\n", [], {"lab"})
    assert caught.value.code == "DPM-E110"


def test_partitions_are_drawn_to_scale() -> None:
    gib = 1024**3
    disk = {
        "device": "/dev/sda",
        "size": 100 * gib,
        "sector_size": 512,
        "label": "dos",
        "partitions": [
            {"number": 1, "start": 2048, "size": 25 * gib // 512, "filesystem": "ntfs", "type": "7"},
            {"number": 2, "start": 50 * gib // 512, "size": 512, "filesystem": "ext4", "hidden": True},
            {"number": 3, "start": 60 * gib // 512, "size": 40 * gib // 512, "filesystem": "extended"},
        ],
    }
    (drawn,) = machine_disks.drawings([disk, "not a disk"])
    one, tiny, ext = drawn.parts
    assert one.width == pytest.approx(250.0) and one.label.startswith("1: 25.0 GiB")
    assert tiny.x == pytest.approx(500.0) and tiny.width == machine_disks.MIN_WIDTH and tiny.label == ""
    assert tiny.hidden and ext.extended and ext.x == pytest.approx(600.0) and ext.width == pytest.approx(400.0)
    assert drawn.table == "dos" and machine_disks.human(512 * 1024**2) == "512 MiB"


def test_free_space_is_its_own_labelled_segment() -> None:
    gib = 1024**3
    disk = {"size": 100 * gib, "partitions": [{"number": 1, "start": 2048, "size": 50 * gib // 512}]}
    (drawn,) = machine_disks.drawings([disk])
    (free,) = drawn.free  # the first MiB before partition 1 is alignment, not free space
    assert free.x == pytest.approx(500.0, abs=0.02) and free.width == pytest.approx(500.0, abs=0.02)
    assert free.label == "free 50.0 GiB" and drawn.free_bytes == free.size
    inside = {"size": 100 * gib, "partitions": [
        {"number": 1, "start": 0, "size": 40 * gib // 512},
        {"number": 2, "start": 40 * gib // 512, "size": 60 * gib // 512, "filesystem": "extended"},
        {"number": 5, "start": 40 * gib // 512, "size": 30 * gib // 512},
    ]}  # fmt: skip
    (drawn,) = machine_disks.drawings([inside])
    assert [(f.x, f.label) for f in drawn.free] == [(700.0, "free 30.0 GiB")]  # unused inside the extended one


def test_well_known_partition_types_are_named() -> None:
    name = machine_disks.type_name
    assert name("C12A7328-F81F-11D2-BA4B-00A0C93EC93B") == "EFI System"
    assert name("0fc63daf-8483-4772-8e79-3d69d8477de4") == "Linux filesystem"
    assert (name("EF00"), name("8200"), name("ef02")) == ("EFI System", "Linux swap", "BIOS boot")
    assert (name("83"), name("c"), name("0b"), name("ee"), name("8e")) == (
        "Linux", "W95 FAT32 (LBA)", "W95 FAT32", "GPT protective", "Linux LVM",
    )  # fmt: skip
    assert name("AB") == name("zz") == name("") == name("12345678-0000-0000-0000-000000000000") == ""
    (drawn,) = machine_disks.drawings([{"size": 1, "partitions": [{"type": "7"}]}])
    assert drawn.parts[0].type == "7" and drawn.parts[0].type_name == "HPFS/NTFS/exFAT"


def test_reported_numbers_are_checked() -> None:
    (drawn,) = machine_disks.drawings([{"size": -1, "partitions": [{"start": "x", "size": True}, 7]}])
    assert drawn.device == "?" and drawn.table == "none" and drawn.parts[0].width == 0.0


def test_the_bulk_selection_is_ids_once() -> None:
    a = str(uuid.uuid4())
    assert machine_bulk.selected({"machine": [a, a]}) == [uuid.UUID(a)]
    for bad in ({}, {"machine": ["nope"]}, {"machine": [a] * 1001}):
        with pytest.raises(DpmError):
            machine_bulk.selected(bad)


def test_the_list_notice_comes_from_keys_never_text() -> None:
    assert machine_bulk.notice("power_off", "20") == "Power off requested for 20 machines."
    assert machine_bulk.notice("power_off", "1") == "Power off requested for 1 machine."  # singular
    assert machine_bulk.notice("clear", "3") == "Errors cleared on 3 machines."
    assert machine_bulk.notice("<b>", "1") is None and machine_bulk.notice(None, None) is None
    assert machine_bulk.notice("run", "many") == "Scenario run requested for 0 machines."


def test_the_form_is_the_rest_body() -> None:
    values = {"name": "pc-1", "macs": "52:54:00:00:00:01, 52-54-00-00-00-02", "smbios_uuid": "", "ip": "",
              "group": "", "os_type": ""}  # fmt: skip
    made = machine_forms.body(values)
    assert made.macs == ["52:54:00:00:00:01", "52-54-00-00-00-02"] and made.group == "new-machines"
    with pytest.raises(DpmError) as caught:
        machine_forms.body({**values, "ip": "not-an-ip"})
    assert caught.value.code == "DPM-E100"
