"""An upload as the updater's data plane sees it, and the rules of resuming it (pure).

The api opens an upload (PackageUploadOpened) for a declared size and, optionally, a SHA-256; the
client sends the bytes in as many requests as it likes, each starting at the offset the store holds
(the tus protocol's Upload-Offset), so a cut connection or a restarted updater costs only the bytes in
flight. The content is complete at exactly the declared size and is kept only if its digest matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from dpm_schemas import E


@dataclass(frozen=True)
class Upload:
    upload_id: UUID
    size: int
    sha256: str | None
    expires_at: datetime
    state: str  # open | stored | aborted
    stored_sha256: str | None = None


def check_use(u: Upload | None, now: datetime) -> Upload:
    """The upload a token may send bytes to now: unknown tokens get one answer (DPM-E401), a closed
    upload says why (DPM-E273), an expired one when (DPM-E274)."""
    if u is None:
        raise E.UNAUTHENTICATED()
    if u.state != "open":
        raise E.PACKAGE_UPLOAD_CLOSED(upload=str(u.upload_id), state=u.state)
    if u.expires_at <= now:
        raise E.PACKAGE_UPLOAD_EXPIRED(upload=str(u.upload_id), expires_at=u.expires_at.isoformat(timespec="seconds"))
    return u


def check_append(u: Upload, held: int, start: int, length: int | None) -> None:
    """A request may add bytes only where the store's copy ends (DPM-E270) and never past the
    declared size (DPM-E271; ``length`` None: not declared, checked while streaming)."""
    if start != held:
        raise E.PACKAGE_UPLOAD_OFFSET(upload=str(u.upload_id), offset=held, sent=start)
    if length is not None and start + length > u.size:
        raise E.PACKAGE_UPLOAD_OVERFLOW(upload=str(u.upload_id), size=u.size)


def check_digest(u: Upload, actual: str) -> None:
    """Complete content is kept only with the digest the client declared (DPM-E272)."""
    if u.sha256 is not None and u.sha256 != actual:
        raise E.PACKAGE_UPLOAD_DIGEST(upload=str(u.upload_id), actual=actual, expected=u.sha256)
