"""A transfer as the data plane sees it, and the rules of its token (pure).

The token of a transfer opened by the api (TransferOpened) is good for one image and one direction
while the transfer is open and unexpired; a use in the last quarter of its idle time renews it
(lifetime.py says why). A backup needs room for what it plans before its first chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from dpm_schemas import E
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import ImageCaptured, TransferAborted, TransferRenewed

RENEW_AT = 0.75  # renew once less than this fraction of the idle time is left


@dataclass(frozen=True)
class Transfer:
    transfer_id: UUID
    image_id: UUID
    image: str
    direction: str
    expires_at: datetime
    machine_id: UUID | None
    execution_id: UUID | None
    state: str
    renew_seconds: float | None = None  # None: a fixed expiry (opened before idle expiry existed)
    reason: str | None = None  # why it was aborted


def check_use(t: Transfer | None, direction: str, now: datetime) -> Transfer:
    """The transfer a token may use now for ``direction``, or the refusal: unknown or another
    direction's token (one answer for both), aborted (DPM-E167), expired, or a backup already
    committing."""
    if t is None or t.direction != direction:
        raise E.UNAUTHENTICATED()
    if t.state == "aborted":
        raise E.TRANSFER_CLOSED(transfer=str(t.transfer_id), image=t.image, reason=t.reason or "aborted")
    if t.expires_at <= now:
        if t.renew_seconds is None:
            raise E.UNAUTHENTICATED()
        since = (t.expires_at - timedelta(seconds=t.renew_seconds)).isoformat(timespec="seconds")
        raise E.TRANSFER_EXPIRED(transfer=str(t.transfer_id), image=t.image, idle_since=since, idle=t.renew_seconds)
    if direction == "backup" and t.state != "open":
        raise E.IMAGE_BUSY(image=t.image, transfer=f"{t.transfer_id} ({t.state})")
    return t


def renewal(t: Transfer, now: datetime) -> TransferRenewed | None:
    """The renewal a use of ``t``'s token at ``now`` calls for, if any."""
    if t.renew_seconds is None or t.state != "open":
        return None
    if (t.expires_at - now).total_seconds() > t.renew_seconds * RENEW_AT:
        return None
    return TransferRenewed(
        transfer_id=t.transfer_id,
        image_id=t.image_id,
        image=t.image,
        expires_at=now + timedelta(seconds=t.renew_seconds),
    )


def check_room(free: int, required: int) -> None:
    """Refuse (DPM-E159) what does not fit in ``free`` bytes (the store's free space less its reserve)."""
    if free < required:
        raise E.STORE_FULL(free=max(free, 0), required=required)


def check_open(history: Sequence[RecordedEvent], t: Transfer) -> None:
    """Refuse (DPM-E118) a transfer the image's stream ``history`` shows committed or aborted."""
    for rec in history:
        e = rec.event
        if isinstance(e, ImageCaptured | TransferAborted) and e.transfer_id == t.transfer_id:
            state = "committed" if isinstance(e, ImageCaptured) else "aborted"
            raise E.TRANSFER_COMMITTED(transfer=str(t.transfer_id), image=t.image, state=state)


def names_manifest(history: Sequence[RecordedEvent], mid: str) -> bool:
    """Whether an ImageCaptured of this image stream points at manifest ``mid``."""
    return any(isinstance(r.event, ImageCaptured) and r.event.manifest == mid for r in history)
