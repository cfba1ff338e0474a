"""Reads the facts the checks before waking need (``dpm_api.domain.prewake``), in two queries for
the whole run however many targets: the machines with their last disk layouts, then the images
their names render to (a restore) or the store's last reported room (a backup). Called in the run
request's (and the dry run's) transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from dpm_api.domain.images import MachineFacts, render_name
from dpm_api.domain.prewake import (
    ImageFacts,
    StoreRoom,
    Target,
    Verdict,
    backup_need,
    backup_verdict,
    restore_verdict,
)

__all__ = ["Verdict", "refuse", "verdicts"]
from dpm_runtime.eventlog import Conn
from dpm_schemas.errors import DpmError
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec

CHECKED = (ScenarioKind.RESTORE, ScenarioKind.BACKUP)


async def verdicts(conn: Conn, spec: ScenarioSpec, machine_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Verdict]:
    """Each target's verdict for a restore or a backup; none for the kinds nothing is checked for."""
    if spec.kind not in CHECKED:
        return {}
    params = dict(spec.params)
    if spec.kind is ScenarioKind.BACKUP:
        return await _backups(conn, params, machine_ids)
    rows = await (
        await conn.execute(
            "SELECT m.machine_id, m.name, m.macs, m.smbios_uuid, d.disks FROM api.machines m"
            " LEFT JOIN api.disk_layouts d ON d.machine_id = m.machine_id WHERE m.machine_id = ANY(%s)",
            (list(dict.fromkeys(machine_ids)),),
        )
    ).fetchall()
    names: dict[uuid.UUID, str | DpmError] = {}
    targets: dict[uuid.UUID, Target] = {}
    for machine_id, name, macs, smbios_uuid, disks in rows:
        facts = MachineFacts(name, (macs or [None])[0], smbios_uuid)
        try:
            names[machine_id] = render_name(params.get("image", ""), facts)
        except DpmError as err:  # a template this machine cannot fill ({mac} without a MAC)
            names[machine_id] = err
        targets[machine_id] = Target(machine_id, name, disks if isinstance(disks, list) else None)
    images = await _images(conn, {n for n in names.values() if isinstance(n, str)})
    out: dict[uuid.UUID, Verdict] = {}
    for machine_id, target in targets.items():
        image_name = names[machine_id]
        if isinstance(image_name, DpmError):
            out[machine_id] = Verdict(image_name)
        else:
            out[machine_id] = restore_verdict(image_name, images.get(image_name), target, params)
    return out


async def _backups(conn: Conn, params: dict[str, str], machine_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Verdict]:
    """Each backup against the store's room, the run's whole-disk backups claiming theirs in turn."""
    row = await (await conn.execute("SELECT free_bytes, free_factor FROM api.store_space")).fetchone()
    room = StoreRoom(int(row[0]), float(row[1])) if row is not None else None
    found = await _targets(conn, machine_ids)
    out: dict[uuid.UUID, Verdict] = {}
    claimed = 0
    for machine_id in dict.fromkeys(machine_ids):
        if (target := found.get(machine_id)) is not None:
            out[machine_id] = verdict = backup_verdict(room, target, params, claimed)
            claimed += backup_need(room, target, params) if verdict.refusal is None else 0
    return out


async def _targets(conn: Conn, machine_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Target]:
    rows = await (
        await conn.execute(
            "SELECT m.machine_id, m.name, d.disks FROM api.machines m"
            " LEFT JOIN api.disk_layouts d ON d.machine_id = m.machine_id WHERE m.machine_id = ANY(%s)",
            (list(dict.fromkeys(machine_ids)),),
        )
    ).fetchall()
    return {r[0]: Target(r[0], r[1], r[2] if isinstance(r[2], list) else None) for r in rows}


async def _images(conn: Conn, names: set[str]) -> dict[str, ImageFacts]:
    if not names:
        return {}
    rows = await (
        await conn.execute(
            "SELECT name, source, size_bytes, sector_size, label, machine_id FROM api.images WHERE name = ANY(%s)",
            (sorted(names),),
        )
    ).fetchall()
    return {r[0]: ImageFacts(*r) for r in rows}


async def refuse(conn: Conn, spec: ScenarioSpec, machine_ids: Sequence[uuid.UUID]) -> None:
    """Raise the first target's refusal, in the order the run names its machines."""
    found = await verdicts(conn, spec, machine_ids)
    for machine_id in machine_ids:
        verdict = found.get(machine_id)
        if verdict is not None and verdict.refusal is not None:
            raise verdict.refusal
