"""Checks before waking (issue 15): a restore is compared with its image and with the target's last
reported disk layout when it is requested, so a too-small disk is refused with its code before any
machine is woken and network-booted, not found out by the deploy client half an hour later. A backup
is compared with the image store's room as the imager last reported it.

Pure: the caller reads the facts (``api.images``, ``api.disk_layouts``); these rules decide. What
cannot be known yet (a machine whose disks were never checked) is a warning, never a refusal: the
deploy client checks again on the machine itself.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dpm_schemas import E
from dpm_schemas.errors import DpmError


@dataclass(frozen=True)
class ImageFacts:
    """What the catalogue holds of one image (``api.images``)."""

    name: str
    source: str  # disk | partition
    size_bytes: int  # of the source disk or partition
    sector_size: int
    label: str | None  # the source disk's partition table: dos | gpt | None
    machine_id: uuid.UUID | None  # the machine it was captured from


@dataclass(frozen=True)
class Target:
    """One target of the restore: its name, and its disks as the last disk check read them (None:
    never checked). Each disk is the deploy client's DiskLayout JSON (size, sector_size, label,
    partitions with number, size in sectors, hidden)."""

    machine_id: uuid.UUID
    name: str
    disks: Sequence[Mapping[str, Any]] | None


@dataclass(frozen=True)
class Verdict:
    """A target's outcome: the refusal (the run is refused with it), and what the operator should know."""

    refusal: DpmError | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


def restore_verdict(image_name: str, image: ImageFacts | None, target: Target, params: Mapping[str, str]) -> Verdict:
    """The restore of ``image`` onto ``target``'s disk ``params['disk']`` (partition ``params
    ['partition']`` of it, counted without hidden ones when ``ignore_hidden``)."""
    if image is None:
        return Verdict(E.IMAGE_NOT_FOUND(image=image_name))
    warnings = _warnings(image, target)
    if target.disks is None:
        return Verdict(None, warnings)
    number = int(params.get("disk", "1"))
    if not 1 <= number <= len(target.disks):
        why = f"it has {len(target.disks)} disk(s) and the scenario restores disk {number}"
        return Verdict(E.RESTORE_TARGET_MISSING(machine=target.name, image=image_name, reason=why), warnings)
    disk = target.disks[number - 1]
    sector = int(disk.get("sector_size") or 512)
    if sector != image.sector_size:
        refusal = E.RESTORE_SECTOR_SIZE(
            machine=target.name, image=image_name, disk_sector=sector, image_sector=image.sector_size
        )
        return Verdict(refusal, warnings)
    partition = params.get("partition")
    if partition is None:
        room, what = int(disk.get("size") or 0), f"disk {number}"
    else:
        found = _partition(disk, int(partition), ignore_hidden=params.get("ignore_hidden") == "true")
        if found is None:
            why = f"disk {number} has no partition {partition}"
            return Verdict(E.RESTORE_TARGET_MISSING(machine=target.name, image=image_name, reason=why), warnings)
        if image.label and disk.get("label") and disk.get("label") != image.label:
            refusal = E.RESTORE_LABEL_DIFFERS(
                machine=target.name, image=image_name, disk_label=disk.get("label"), image_label=image.label
            )
            return Verdict(refusal, warnings)
        room, what = int(found.get("size") or 0) * sector, f"partition {partition} of disk {number}"
    if room < image.size_bytes:
        refusal = E.RESTORE_TARGET_TOO_SMALL(
            machine=target.name, image=image_name, target=what, room=room, needed=image.size_bytes
        )
        return Verdict(refusal, warnings)
    return Verdict(None, warnings)


@dataclass(frozen=True)
class StoreRoom:
    """The image store as the imager last reported it: what a backup may still take (free space less
    the reserve; negative under it), and the factor of its planned bytes a backup's start demands."""

    free_bytes: int
    free_factor: float


def backup_verdict(room: StoreRoom | None, target: Target, params: Mapping[str, str], claimed: int) -> Verdict:
    """A backup of ``target``'s disk (or partition) into the store, after the run's earlier targets
    ``claimed`` their part. A whole-disk backup (``mode=full``) of a known size needs what the imager
    will demand at its start; a used-blocks one needs an unknown part of it, so only a store with no
    room at all refuses it, and one smaller than the disk warns."""
    if room is None:  # never reported: the imager checks at the backup's start
        return Verdict()
    size, free = _source_bytes(target, params), room.free_bytes - claimed
    if params.get("mode", "used") == "full" and size is not None:
        need = math.ceil(size * room.free_factor)
        return Verdict(E.STORE_FULL(free=max(free, 0), required=need)) if free < need else Verdict()
    if free <= 0:
        return Verdict(E.STORE_FULL(free=0, required=size or 1))
    if size is not None and free < size:
        return Verdict(None, (f"the image store has {free} bytes free and {target.name}'s source has {size}: "
                              "the backup fits only if dedup and compression shrink it enough",))  # fmt: skip
    return Verdict()


def backup_need(room: StoreRoom | None, target: Target, params: Mapping[str, str]) -> int:
    """What a target's backup claims of the store for the run's later targets (whole-disk ones only)."""
    size = _source_bytes(target, params)
    if room is None or size is None or params.get("mode", "used") != "full":
        return 0
    return math.ceil(size * room.free_factor)


def _source_bytes(target: Target, params: Mapping[str, str]) -> int | None:
    """The size of the disk or partition a backup reads, by the target's last disk check (None: unknown)."""
    number = int(params.get("disk", "1"))
    if target.disks is None or not 1 <= number <= len(target.disks):
        return None
    disk = target.disks[number - 1]
    if params.get("partition") is None:
        return int(disk.get("size") or 0) or None
    found = _partition(disk, int(params["partition"]), ignore_hidden=params.get("ignore_hidden") == "true")
    return int(found.get("size") or 0) * int(disk.get("sector_size") or 512) if found is not None else None


def _partition(disk: Mapping[str, Any], number: int, *, ignore_hidden: bool) -> Mapping[str, Any] | None:
    """Partition ``number`` as a scenario counts it (as DiskLayout.partition does on the machine)."""
    parts = [p for p in disk.get("partitions") or () if isinstance(p, Mapping)]
    if ignore_hidden:
        shown = [p for p in parts if not p.get("hidden")]
        return shown[number - 1] if 1 <= number <= len(shown) else None
    return next((p for p in parts if p.get("number") == number), None)


def _warnings(image: ImageFacts, target: Target) -> tuple[str, ...]:
    out = []
    if image.machine_id is not None and image.machine_id != target.machine_id:
        out.append(
            f"{image.name} was captured from another machine: {target.name} will carry that machine's host "
            "name and addresses until they are changed"
        )
    if target.disks is None:
        out.append(f"{target.name} has no disk check on record: its disk is checked only once it booted")
    return tuple(out)
