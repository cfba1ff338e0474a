"""Pure rules of the image catalogue: names from templates, and who may open a transfer.

A backup holds its image name from TransferOpened until ImageCaptured or TransferAborted (or its
token's expiry, as the imager's TransferRenewed moved it): a second backup of the same name in
that time is refused (DPM-E160) instead of silently overwriting (the original's BR-04). The hold
is a short lease (DPM_API_BACKUP_LEASE, 5 minutes) that the backup's uploads and heartbeat renew,
not the 6 hours a token may idle: a backup whose client died before it could abort, or could not
reach the imager to, used to lock the name for 6 hours. An operator's unlock ends it at once. The
decision reads the image's two streams; the append that follows carries the catalogue stream's
version, so two concurrent opens cannot both pass.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dpm_schemas import E
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import ImageCaptured, ImageDeleted, TransferAborted, TransferOpened, TransferRenewed
from dpm_schemas.events.imaging import TransferDirection

_NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class MachineFacts:
    name: str
    mac: str | None
    smbios_uuid: uuid.UUID | None


def render_name(template: str, machine: MachineFacts | None) -> str:
    """``backups/{machine}`` -> ``backups/web-01``: one scenario on N machines gives N images."""

    def field(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in ("machine", "mac", "uuid"):
            raise E.IMAGE_INVALID(reason=f"unknown template field {{{key}}}")
        if machine is None:
            raise E.IMAGE_INVALID(reason=f"{{{key}}} needs a machine to fill it in")
        value = {"machine": machine.name, "mac": machine.mac, "uuid": machine.smbios_uuid}[key]
        if value is None:
            raise E.IMAGE_INVALID(reason=f"machine {machine.name} has no {key} for {{{key}}}")
        return str(value).replace(":", "-").lower() if key != "machine" else str(value)

    name = _FIELD.sub(field, template)
    if not 1 <= len(name) <= 200 or not _NAME.match(name) or any(p in (".", "..") for p in name.split("/")):
        raise E.IMAGE_INVALID(reason=f"invalid image name {name!r}")
    return name


def exists(image_events: Sequence[RecordedEvent], catalog_events: Sequence[RecordedEvent]) -> bool:
    """Captured at least once, and not deleted since (the newest of the two facts wins)."""
    last_capture = max((r.position for r in image_events if isinstance(r.event, ImageCaptured)), default=0)
    last_delete = max((r.position for r in catalog_events if isinstance(r.event, ImageDeleted)), default=0)
    return last_capture > last_delete


def check_open(
    image: str,
    direction: TransferDirection,
    catalog_events: Sequence[RecordedEvent],
    image_events: Sequence[RecordedEvent],
    now: datetime,
) -> None:
    """Raise when this transfer may not open now."""
    if direction is not TransferDirection.BACKUP:
        if not exists(image_events, catalog_events):
            raise E.IMAGE_NOT_FOUND(image=image)
        return
    held = holders(catalog_events, image_events, now)
    if held:
        raise E.IMAGE_BUSY(image=image, transfer=str(held[0].transfer_id))


def holders(
    catalog_events: Sequence[RecordedEvent], image_events: Sequence[RecordedEvent], now: datetime
) -> list[TransferOpened]:
    """The backups holding the image's name now: opened, not committed or aborted (by the imager, or
    revoked here by an operator's unlock), and within their lease as the imager last renewed it."""
    streams = (*image_events, *catalog_events)
    closed = {r.event.transfer_id for r in streams if isinstance(r.event, ImageCaptured | TransferAborted)}
    renewed = {r.event.transfer_id: r.event.expires_at for r in image_events if isinstance(r.event, TransferRenewed)}
    return [
        e
        for e in (r.event for r in catalog_events)
        if isinstance(e, TransferOpened)
        and e.direction is TransferDirection.BACKUP
        and e.transfer_id not in closed
        and max(e.expires_at, renewed.get(e.transfer_id, e.expires_at)) > now
    ]


def revocations(held: Sequence[TransferOpened], actor: str) -> list[TransferAborted]:
    """An operator's unlock: each holder's transfer aborted, so its token is refused (DPM-E167), its
    chunks are collected and the name is free for the next backup."""
    return [
        TransferAborted(transfer_id=e.transfer_id, image_id=e.image_id, image=e.image,
                        reason=f"unlocked by {actor}"[:1000])
        for e in held
    ]  # fmt: skip
