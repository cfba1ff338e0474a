"""A Packages index (pure): one frozen entry per stanza, keyed by (package, version, architecture).
A stanza without Filename, Size or SHA256 is refused: without them the file cannot be fetched and
checked, and a package dpm cannot check is one it must not offer."""

from __future__ import annotations

from dataclasses import dataclass

from debian import deb822

from dpm_schemas import E

PackageKey = tuple[str, str, str]  # package, version, architecture
REQUIRED = ("Package", "Version", "Architecture", "Filename", "Size", "SHA256")


@dataclass(frozen=True)
class PackageEntry:
    package: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    depends: str = ""
    description: str = ""
    component: str = ""

    @property
    def key(self) -> PackageKey:
        return (self.package, self.version, self.architecture)


@dataclass(frozen=True)
class Index:
    """A snapshot of a source: its entries sorted by key, the first of a key kept (one component
    listing what another does is the same package)."""

    entries: tuple[PackageEntry, ...] = ()

    @classmethod
    def of(cls, entries: list[PackageEntry]) -> Index:
        seen: dict[PackageKey, PackageEntry] = {}
        for e in entries:
            seen.setdefault(e.key, e)
        return cls(tuple(seen[k] for k in sorted(seen)))

    def by_key(self) -> dict[PackageKey, PackageEntry]:
        return {e.key: e for e in self.entries}


def parse_packages(data: bytes, *, source: str, file: str, component: str = "") -> list[PackageEntry]:
    out = []
    for para in deb822.Packages.iter_paragraphs(data.splitlines(), use_apt_pkg=False):
        missing = [f for f in REQUIRED if not para.get(f)]
        if missing:
            name = para.get("Package", "?")
            raise E.SOURCE_INDEX_INVALID(source=source, file=file, reason=f"{name}: no {', '.join(missing)}")
        filename = str(para["Filename"]).removeprefix("./")
        if filename.startswith("/") or ".." in filename.split("/") or not str(para["Size"]).isdigit():
            raise E.SOURCE_INDEX_INVALID(source=source, file=file, reason=f"{para['Package']}: bad Filename or Size")
        out.append(
            PackageEntry(
                package=str(para["Package"]),
                version=str(para["Version"]),
                architecture=str(para["Architecture"]),
                filename=filename,
                size=int(para["Size"]),
                sha256=str(para["SHA256"]).lower(),
                depends=str(para.get("Depends", "")),
                description=str(para.get("Description", "")),
                component=component,
            )
        )
    return out
