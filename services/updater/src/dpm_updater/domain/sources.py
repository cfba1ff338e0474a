"""What a sync of a package source offers (pure): the include filter, the entries new or changed
since the last sync whose files reached the store, and the SourceSynced events that carry them
(at most OFFERED_MAX entries each, so a large first sync is several bounded events)."""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from dpm_schemas.events.sources import OFFERED_MAX, OfferedPackage, SourceSynced, SyncCounts
from dpm_updater.sources.domain.changes import Changes
from dpm_updater.sources.domain.packages import Index, PackageEntry


def included(patterns: Sequence[str], name: str) -> bool:
    """``name`` matches one of the globs (case-sensitive, as Debian package names are lower-case)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def previous_index(rows: Sequence[tuple[str, str, str, str, int, str]]) -> Index:
    """What earlier syncs offered (package, version, architecture, sha256, size, filename)."""
    return Index.of(
        [PackageEntry(package=p, version=v, architecture=a, filename=f, size=s, sha256=h) for p, v, a, h, s, f in rows]
    )


def offered(changes: Changes, failed: set[str]) -> tuple[OfferedPackage, ...]:
    """New and republished entries, less those whose file (``failed``: Filenames) could not be
    fetched: the next sync tries them again, since they were never offered."""
    fresh = [*changes.added, *(after for _before, after in changes.changed)]
    return tuple(
        OfferedPackage(
            name=e.package,
            version=e.version,
            architecture=e.architecture,
            sha256=e.sha256,
            size=e.size,
            filename=e.filename[:1000],
        )
        for e in sorted(fresh, key=lambda e: e.key)
        if e.filename not in failed
    )


def synced_events(
    source_id: uuid.UUID,
    at: datetime,
    *,
    ok: bool,
    code: str | None,
    message: str,
    counts: SyncCounts,
    entries: Sequence[OfferedPackage] = (),
) -> list[SourceSynced]:
    """One SourceSynced per OFFERED_MAX entries (at least one), sharing a sync id; ``final`` on the last."""
    sync_id = uuid.uuid4()
    parts = [entries[i : i + OFFERED_MAX] for i in range(0, len(entries), OFFERED_MAX)] or [()]
    return [
        SourceSynced(
            source_id=source_id,
            sync_id=sync_id,
            at=at,
            ok=ok,
            code=code,
            message=message[:1000],
            counts=counts,
            offered=tuple(part),
            final=i == len(parts) - 1,
        )
        for i, part in enumerate(parts)
    ]


def is_due(last: datetime | None, interval_minutes: int, now: datetime) -> bool:
    """Never synced, or the interval has passed since the last sync."""
    return last is None or now - last >= timedelta(minutes=interval_minutes)
