"""The checks before waking, as pure rules: a restore against its image and the target's disks as
the deploy client reported them (the agent's own DiskLayout, serialized as it sends it)."""

from __future__ import annotations

import uuid
from typing import Any

from dpm_agent.deploy.layout import DiskLayout, Partition
from dpm_api.domain.prewake import ImageFacts, StoreRoom, Target, backup_need, backup_verdict, restore_verdict

GIB = 1 << 30
HERE, ELSEWHERE = uuid.uuid4(), uuid.uuid4()


def disk(size: int, *, sector: int = 512, label: str | None = "gpt", parts: tuple[Partition, ...] = ()) -> Any:
    return DiskLayout("/dev/sda", size, sector, sector, label, partitions=parts).to_dict()


def image(size: int, *, source: str = "disk", sector: int = 512, label: str | None = "gpt", of: Any = HERE) -> Any:
    return ImageFacts("web", source, size, sector, label, of)


def verdict(img: ImageFacts | None, disks: list[Any] | None, **params: str) -> Any:
    return restore_verdict("web", img, Target(HERE, "pc1", disks), params)


def code(v: Any) -> str | None:
    return v.refusal.code if v.refusal else None


def test_a_disk_image_fits_a_disk_as_large_and_not_a_smaller_one() -> None:
    assert code(verdict(image(10 * GIB), [disk(10 * GIB)])) is None
    small = verdict(image(10 * GIB), [disk(10 * GIB - 512)])
    assert code(small) == "DPM-E174" and "10737418240" in small.refusal.message


def test_the_disk_the_scenario_names_must_exist_and_share_the_sector_size() -> None:
    assert code(verdict(image(GIB), [disk(20 * GIB)], disk="2")) == "DPM-E176"
    assert code(verdict(image(GIB), [disk(20 * GIB), disk(20 * GIB)], disk="2")) is None
    assert code(verdict(image(GIB, sector=512), [disk(20 * GIB, sector=4096)])) == "DPM-E175"


def test_a_partition_image_needs_its_partition_big_enough_on_the_same_kind_of_table() -> None:
    parts = (Partition(1, 2048, 1024, "EF00", hidden=True), Partition(2, 4096, 2 * 2097152, "8300"))
    layout = [disk(20 * GIB, parts=parts)]
    part = image(GIB, source="partition")
    assert code(verdict(part, layout, partition="2")) is None  # 2 GiB partition
    assert code(verdict(part, layout, partition="3")) == "DPM-E176"
    assert code(verdict(image(3 * GIB, source="partition"), layout, partition="2")) == "DPM-E174"
    assert code(verdict(part, layout, partition="1")) == "DPM-E174"  # the hidden one is 512 KiB
    assert code(verdict(part, layout, partition="1", ignore_hidden="true")) is None  # counted without it
    dos = image(GIB, source="partition", label="dos")
    assert code(verdict(dos, layout, partition="2")) == "DPM-E177"


def test_what_cannot_be_known_warns_and_what_is_missing_refuses() -> None:
    assert code(verdict(None, [disk(GIB)])) == "DPM-E158"
    unknown = verdict(image(GIB), None)
    assert code(unknown) is None and "no disk check" in unknown.warnings[0]
    foreign = verdict(image(GIB, of=ELSEWHERE), [disk(2 * GIB)])
    assert code(foreign) is None and "another machine" in foreign.warnings[0]
    assert verdict(image(GIB, of=None), [disk(2 * GIB)]).warnings == ()


def backup(free: int | None, disks: list[Any] | None, claimed: int = 0, factor: float = 1.0, **params: str) -> Any:
    room = StoreRoom(free, factor) if free is not None else None
    return backup_verdict(room, Target(HERE, "pc1", disks), params, claimed)


def test_a_whole_disk_backup_needs_what_the_imager_will_demand_at_its_start() -> None:
    assert code(backup(10 * GIB, [disk(10 * GIB)], mode="full")) is None
    full = backup(10 * GIB - 1, [disk(10 * GIB)], mode="full")
    assert code(full) == "DPM-E159" and "10737418240" in full.refusal.message
    assert code(backup(10 * GIB, [disk(10 * GIB)], factor=1.5, mode="full")) == "DPM-E159"  # the imager's factor
    # earlier targets of the same run claimed their part of the store
    assert code(backup(15 * GIB, [disk(10 * GIB)], claimed=10 * GIB, mode="full")) == "DPM-E159"
    assert backup_need(StoreRoom(0, 1.0), Target(HERE, "pc1", [disk(10 * GIB)]), {"mode": "full"}) == 10 * GIB
    assert backup_need(StoreRoom(0, 1.0), Target(HERE, "pc1", [disk(10 * GIB)]), {}) == 0  # used blocks: unknown


def test_a_partition_backup_is_sized_by_its_partition() -> None:
    parts = (Partition(1, 2048, GIB // 512, "8300"), Partition(2, 2048 + GIB // 512, 4 * GIB // 512, "8300"))
    assert code(backup(2 * GIB, [disk(8 * GIB, parts=parts)], mode="full", partition="1")) is None
    assert code(backup(2 * GIB, [disk(8 * GIB, parts=parts)], mode="full", partition="2")) == "DPM-E159"


def test_a_used_blocks_backup_is_refused_only_by_a_store_with_no_room_and_warned_by_a_small_one() -> None:
    assert code(backup(0, [disk(10 * GIB)])) == "DPM-E159"
    small = backup(GIB, [disk(10 * GIB)])
    assert code(small) is None and "dedup" in small.warnings[0]
    assert backup(20 * GIB, [disk(10 * GIB)]).warnings == ()
    # never reported, or never checked: nothing to judge by (the imager checks at the backup's start)
    assert code(backup(None, [disk(10 * GIB)], mode="full")) is None
    assert code(backup(GIB, None, mode="full")) is None
