"""The disk configuration check against sfdisk's own reading of the same disks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.tests.deploy.disks import blank, loop, mkext4, mkvfat, need_tools, run, sfdisk, sfdisk_json, tree
from dpm_agent.deploy.device import open_device
from dpm_agent.deploy.layout import read_layout
from dpm_schemas import DpmError

pytestmark = need_tools
MiB = 1024 * 1024

MBR_SCRIPT = """label: dos
label-id: 0x1234abcd
size=8MiB, type=c, bootable
size=8MiB, type=17
size=8MiB, type=83
type=5
size=4MiB, type=83
size=4MiB, type=82
size=2MiB, type=7
"""

GPT_SCRIPT = """label: gpt
label-id: 4E1D78DD-4954-D542-AA39-80EB17FC8CBB
size=8MiB, type=uefi, name="EFI system", attrs="RequiredPartition"
size=4MiB, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, name="msr"
size=16MiB, type=linux, name="root", attrs="LegacyBIOSBootable GUID:60,63"
size=8MiB, type=swap
"""


def _ours(target: str, sector_size: int | None = None) -> dict:
    return read_layout(open_device(target, sector_size)).to_sfdisk()


def _theirs(target: str) -> dict:
    table = sfdisk_json(target)
    table.pop("device")
    for p in table["partitions"]:
        p.pop("node")
    return table


def test_mbr_with_logical_partitions_equals_sfdisk(tmp_path: Path) -> None:
    disk = str(blank(tmp_path / "mbr.img", 64 * MiB))
    sfdisk(disk, MBR_SCRIPT)
    ours = _ours(disk)
    assert ours == _theirs(disk)
    assert [p["type"] for p in ours["partitions"]] == ["c", "17", "83", "5", "83", "82", "7"]


def test_gpt_with_names_and_attributes_equals_sfdisk(tmp_path: Path) -> None:
    disk = str(blank(tmp_path / "gpt.img", 64 * MiB))
    sfdisk(disk, GPT_SCRIPT)
    ours = _ours(disk)
    assert ours == _theirs(disk)
    assert ours["partitions"][2]["attrs"] == "LegacyBIOSBootable GUID:60,63"


def test_gpt_made_by_sgdisk_equals_sfdisk(tmp_path: Path) -> None:
    disk = str(blank(tmp_path / "sg.img", 48 * MiB))
    run("sgdisk", "-n", "1:2048:+10M", "-t", "1:ef00", "-c", "1:ESP", "-n", "2:0:+20M", "-t", "2:8300", disk)
    assert _ours(disk) == _theirs(disk)


@pytest.mark.parametrize("label", ["gpt", "dos"])
def test_4096_byte_sectors_equal_sfdisk_on_a_real_block_device(tmp_path: Path, label: str) -> None:
    image = blank(tmp_path / "4k.img", 64 * MiB)
    with loop(image, 4096) as dev:
        sfdisk(dev, f"label: {label}\nsize=8MiB, type=L\nsize=16MiB, type=L\n")
        layout = read_layout(open_device(dev))
        assert layout.sector_size == 4096
        assert layout.to_sfdisk() == _theirs(dev)
    # the same bytes read as a file: GPT's header place gives the sector size away; MBR is told
    assert _ours(str(image), None if label == "gpt" else 4096) == layout.to_sfdisk()


def test_filesystems_and_hidden_partitions(tmp_path: Path) -> None:
    disk = blank(tmp_path / "fs.img", 64 * MiB)
    sfdisk(str(disk), MBR_SCRIPT)
    content = tree(tmp_path / "content")
    mkvfat(disk, 2048 * 512, 8 * MiB, content)
    mkext4(disk, (2048 + 2 * 16384) * 512, 8 * MiB, content)
    layout = read_layout(open_device(str(disk)))
    fs = {p.number: p.filesystem for p in layout.partitions}
    assert fs[1] == "vfat" and fs[3] == "ext4" and fs[4] == "extended" and fs[5] == "unknown"
    hidden = [p.number for p in layout.partitions if p.hidden]
    assert hidden == [2]
    # "ignore hidden partitions": the hidden 2 is not counted, so scenario partition 2 is the ext4 one
    assert layout.partition(2, ignore_hidden=True) is layout.partition(3)
    assert layout.partition(2) is not None and layout.partition(2).type == "17"


def test_gpt_hidden_types_and_backup_header(tmp_path: Path) -> None:
    disk = blank(tmp_path / "g.img", 64 * MiB)
    sfdisk(str(disk), GPT_SCRIPT)
    good = read_layout(open_device(str(disk)))
    assert [p.number for p in good.partitions if p.hidden] == [2]
    with open(disk, "r+b") as f:  # smash the primary header: the backup at the last LBA answers
        f.seek(512 + 24)
        f.write(b"\xff" * 8)
    assert read_layout(open_device(str(disk))).to_sfdisk() == good.to_sfdisk()
    with open(disk, "r+b") as f:  # and the backup too: a clear error, not a guess
        f.seek(64 * MiB - 512 + 24)
        f.write(b"\xff" * 8)
    with pytest.raises(DpmError) as err:
        read_layout(open_device(str(disk), 512))
    assert err.value.code == "DPM-E161"


def test_no_table_and_missing_disk(tmp_path: Path) -> None:
    disk = blank(tmp_path / "raw.img", 4 * MiB)
    layout = read_layout(open_device(str(disk)))
    assert layout.label is None and layout.partitions == ()
    with pytest.raises(DpmError) as err:
        open_device(str(tmp_path / "nope.img"))
    assert err.value.code == "DPM-E150"
