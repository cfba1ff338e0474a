"""A whole backup, restore or disk check against the imager, as the deploy environment and an
operator's ``dpm images backup|restore`` both run it: the transfer around the pure work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from dpm_agent.deploy import backup as backup_mod
from dpm_agent.deploy import restore as restore_mod
from dpm_agent.deploy.device import open_device
from dpm_agent.deploy.layout import DiskLayout, read_layout
from dpm_agent.deploy.remote import RemoteStore, TransferGrant
from dpm_imagefmt.manifest import Manifest
from dpm_schemas.errors import DpmError

Report = Callable[[int, int], None]  # (bytes done, bytes in all)


def disk_check(devices: list[str], sector_size: int | None = None) -> list[DiskLayout]:
    return [read_layout(open_device(d, sector_size)) for d in devices]


def run_backup(
    device: str,
    grant: TransferGrant,
    *,
    partition: int | None = None,
    mode: str = "full",
    ignore_hidden: bool = False,
    sector_size: int | None = None,
    meta: dict[str, str] | None = None,
    report: Report | None = None,
) -> dict[str, Any]:
    store = RemoteStore(grant)
    try:  # every failure aborts, a missing device or an unreadable layout too: the name is free at once
        dev = open_device(device, sector_size)
        layout = read_layout(dev)
        part = backup_mod.source_of(layout, partition, ignore_hidden)
        store.start(sum(n for _, n in backup_mod.plan(dev, layout, part, mode)))
        progress = backup_mod.heartbeat(store.renew, report)
        manifest, stats = backup_mod.backup(
            dev, layout, store, partition=partition, ignore_hidden=ignore_hidden, mode=mode, meta=meta,
            progress=progress,
        )  # fmt: skip
        committed = store.commit(manifest.encode())
    except BaseException as exc:
        _abort(store, exc)
        raise
    return {**committed, "stats": asdict(stats), "captured_bytes": manifest.captured_bytes}


def run_restore(
    device: str,
    grant: TransferGrant,
    *,
    partition: int | None = None,
    ignore_hidden: bool = False,
    sector_size: int | None = None,
    report: Report | None = None,
    grow_table: bool = False,
) -> dict[str, Any]:
    store = RemoteStore(grant)
    manifest = Manifest.decode(store.manifest())
    # A disk-image file has no sector size of its own: it takes the image's unless told otherwise
    # (a block device always answers with its own, and the pre-flight check compares them).
    dev = open_device(device, sector_size or manifest.sector_size)
    target = restore_mod.preflight(manifest, read_layout(dev), partition=partition, ignore_hidden=ignore_hidden)
    seconds = restore_mod.restore(
        device, target, manifest, store, image=grant.image, progress=report, grow_table=grow_table
    )
    return {"image": grant.image, "written_bytes": manifest.captured_bytes, "seconds": seconds}


def _abort(store: RemoteStore, exc: BaseException) -> None:
    """Release the image name now rather than at the token's expiry (best effort)."""
    reason = f"{exc.code} {exc.message}" if isinstance(exc, DpmError) else repr(exc)
    try:
        store.abort(reason)
    except Exception:  # the imager may be what failed; the token's expiry frees the name then
        return
