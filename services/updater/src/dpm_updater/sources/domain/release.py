"""A repository's Release file (pure): its suite, components, architectures and the SHA256 list of
its index files. Only SHA256 is trusted (MD5 and SHA1 alone are refused), because the list is what
makes every index file, and through it every package, as trustworthy as the signed Release."""

from __future__ import annotations

import re
from dataclasses import dataclass

from debian import deb822

from dpm_schemas import E

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class IndexFile:
    path: str  # relative to dists/<suite>/
    size: int
    sha256: str


@dataclass(frozen=True)
class Release:
    suite: str
    codename: str
    date: str
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    files: tuple[IndexFile, ...]

    def listed(self, path: str) -> IndexFile | None:
        return next((f for f in self.files if f.path == path), None)


def parse_release(data: bytes, *, source: str, file: str = "Release") -> Release:
    """Parse a Release or InRelease payload (a clearsigned wrapper is stripped by deb822; the
    adapter parses gpgv's verified output instead whenever a key is configured)."""
    try:
        para = deb822.Release(data.splitlines())
    except Exception as exc:
        raise E.SOURCE_INDEX_INVALID(source=source, file=file, reason=f"unreadable ({exc})"[:200]) from None
    files = []
    for item in para.get("SHA256", []) or []:
        path, size, digest = str(item.get("name", "")), str(item.get("size", "")), str(item.get("sha256", ""))
        if not path or path.startswith("/") or ".." in path.split("/"):
            raise E.SOURCE_INDEX_INVALID(source=source, file=file, reason=f"index path {path!r} not relative")
        if not size.isdigit() or not _HEX64.fullmatch(digest):
            raise E.SOURCE_INDEX_INVALID(source=source, file=file, reason=f"bad size or SHA256 for {path!r}")
        files.append(IndexFile(path, int(size), digest))
    if not files:
        raise E.SOURCE_INDEX_INVALID(source=source, file=file, reason="no SHA256 list of index files")
    return Release(
        suite=str(para.get("Suite", "")),
        codename=str(para.get("Codename", "")),
        date=str(para.get("Date", "")),
        components=tuple(str(para.get("Components", "")).split()),
        architectures=tuple(str(para.get("Architectures", "")).split()),
        files=tuple(files),
    )
