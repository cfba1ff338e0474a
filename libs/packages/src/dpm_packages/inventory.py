"""What the engine knows about one machine: a frozen value, where ``None`` means "not reported".

The agent today reports only the OS, kernel and ``name=version`` packages. A rule that needs a fact
the agent did not report (a registry value, a probe's exit code) must say "unknown", never "false":
that is why every optional fact is ``None`` when absent rather than an empty mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from dpm_packages.versions import VersionScheme


class OsFamily(StrEnum):
    LINUX = "linux"
    WINDOWS = "windows"


class Inventory(BaseModel):
    """One machine's facts. ``None`` fields are unknown; empty mappings are known to be empty."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    os_name: str
    os_version: str = ""
    os_family: OsFamily | None = None
    architecture: str | None = None
    languages: tuple[str, ...] | None = None
    package_system: VersionScheme | None = None  # deb or rpm: how installed versions order
    packages: Mapping[str, str] | None = None  # name -> version
    files: Mapping[str, str] | None = None  # path -> file version ("" when it has none)
    registry: Mapping[str, str] | None = None  # "KEY\\value" -> data
    probes: Mapping[str, int] | None = None  # command -> exit code
    applied: Mapping[str, int] | None = None  # dpm package id -> revision applied
    free_disk_bytes: int | None = None
    service_pack: tuple[int, int] | None = None  # Windows: (major, minor) of the installed SP
    hotfixes: frozenset[str] | None = None  # Windows: MS/KB numbers installed
    applications: Mapping[str, str] | None = None  # display name -> display version


def _family(os_name: str) -> OsFamily | None:
    lowered = os_name.lower()
    if "windows" in lowered:
        return OsFamily.WINDOWS
    if any(word in lowered for word in ("linux", "debian", "ubuntu", "red hat", "rhel", "fedora", "centos", "suse")):
        return OsFamily.LINUX
    return None


def _scheme(os_name: str) -> VersionScheme | None:
    lowered = os_name.lower()
    if any(word in lowered for word in ("debian", "ubuntu")):
        return VersionScheme.DEBIAN
    if any(word in lowered for word in ("red hat", "rhel", "fedora", "centos", "suse", "rocky", "alma")):
        return VersionScheme.RPM
    return None


def from_reported(os: str, kernel: str, packages: Iterable[str] = ()) -> Inventory:
    """Build from ``InventoryReported(os, kernel, packages=("name=version", ...))``.

    Files, registry, probes, languages, applied dpm packages and disk space are not in that event, so
    they stay unknown. An entry without ``=`` is a package of unknown version ("").
    """
    parsed: dict[str, str] = {}
    for entry in packages:
        name, _, version = entry.partition("=")
        parsed[name] = version
    return Inventory(
        os_name=os,
        os_version=kernel,
        os_family=_family(os) or (OsFamily.LINUX if kernel else None),
        package_system=_scheme(os),
        packages=parsed,
    )
