"""What changed between two syncs (pure): new keys, keys whose content changed (same package,
version and architecture republished with another hash), and keys gone. A new version of a package
is a new key, so an update shows as added (and the old version as removed once the repository drops it)."""

from __future__ import annotations

from dataclasses import dataclass

from dpm_updater.sources.domain.packages import Index, PackageEntry


@dataclass(frozen=True)
class Changes:
    added: tuple[PackageEntry, ...] = ()
    changed: tuple[tuple[PackageEntry, PackageEntry], ...] = ()  # (before, after)
    removed: tuple[PackageEntry, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def diff(before: Index | None, after: Index) -> Changes:
    old = before.by_key() if before else {}
    new = after.by_key()
    return Changes(
        added=tuple(e for k, e in new.items() if k not in old),
        changed=tuple((old[k], e) for k, e in new.items() if k in old and old[k].sha256 != e.sha256),
        removed=tuple(e for k, e in old.items() if k not in new),
    )
