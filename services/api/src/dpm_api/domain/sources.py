"""Package sources as the api checks them (pure): a source's settings, each refusal with its code
(DPM-E290 name, DPM-E291 a setting or an unknown kind, DPM-E292 include, DPM-E293 key), and the
packages its syncs offer as catalogue revisions: one package per source and package name (and
architecture, when the source syncs several), of the highest version a sync offered (Debian
ordering for a deb source, rpm's for an rpm one)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from dpm_packages.urls import url_problem
from dpm_packages.versions import compare_debian, compare_rpm
from dpm_schemas import E
from dpm_schemas.events.sources import KEY_MAX, SOURCE_KINDS, OfferedPackage

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_PLAIN = re.compile(r"[A-Za-z0-9._+~-]{1,64}")
_GLOB = re.compile(r"[A-Za-z0-9.+*?\[\]!-]{1,100}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_ARMOR = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
ID_MAX = 63
DEB_DEFAULTS = {"suite": "stable", "components": ["main"], "architectures": ["amd64"]}
ANY_ARCH = ("all", "noarch")  # Debian's and rpm's word for "every architecture"


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise E.SOURCE_NAME_INVALID(name=name, reason="1 to 32 of A-Z a-z 0-9 - _, not starting with - or _")


def check_kind(source: str, kind: str) -> None:
    if kind not in SOURCE_KINDS:
        reason = "deb (a Debian-format repository) or rpm (an RPM repository with repodata/repomd.xml)"
        raise E.SOURCE_FIELD_INVALID(source=source, field="kind", value=kind, reason=reason)


def kind_defaults(source: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Suite, components and architectures as the kind has them: a deb source's defaults (stable,
    main, amd64) for those not given; an rpm source has no suite or components (DPM-E291 if given)
    and, when not given, no architecture filter."""
    if fields["kind"] == "deb":
        return {k: fields.get(k) if fields.get(k) is not None else v for k, v in DEB_DEFAULTS.items()}
    for field in ("suite", "components"):
        if fields.get(field):
            reason = "an rpm source has none (its repodata/repomd.xml lists what there is)"
            raise E.SOURCE_FIELD_INVALID(source=source, field=field, value=fields[field], reason=reason)
    return {"suite": None, "components": [], "architectures": fields.get("architectures") or []}


def check_url(source: str, field: str, url: str, *, proxy: bool = False) -> None:
    """An absolute http(s) URL with a host and a valid port; a proxy: http, no path, no credentials."""

    def bad(reason: str) -> Exception:
        shown = url if not proxy else re.sub(r"//[^@/]*@", "//***@", url)
        return E.SOURCE_FIELD_INVALID(source=source, field=field, value=shown, reason=reason)

    if len(url) > 1000:
        raise bad("longer than 1000")
    if (why := url_problem(url, schemes=("http",) if proxy else ("http", "https"), proxy=proxy)) is not None:
        raise bad(why)
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise bad("credentials never go into a URL: the updater reads them from DPM_UPDATER_SOURCE_CREDENTIALS")


def check_plain(source: str, field: str, values: Sequence[str], *, at_least: int = 1) -> None:
    if len(values) < at_least or len(values) > 16:
        raise E.SOURCE_FIELD_INVALID(source=source, field=field, value=list(values), reason="give 1 to 16")
    for value in values:
        if not _PLAIN.fullmatch(value) or value in (".", ".."):
            raise E.SOURCE_FIELD_INVALID(source=source, field=field, value=value, reason="not a plain name")


def check_include(source: str, include: Sequence[str]) -> None:
    if not include or len(include) > 100:
        raise E.SOURCE_INCLUDE_REQUIRED(source=source, value=list(include), reason="give 1 to 100 name globs")
    for glob in include:
        if not _GLOB.fullmatch(glob) or glob.strip("*?") == "":
            raise E.SOURCE_INCLUDE_REQUIRED(
                source=source, value=glob, reason="a package name or glob (a-z 0-9 . + - * ? [ ]), not '*' alone"
            )


def check_key(source: str, key: str | None) -> None:
    if key is None:
        return
    if len(key) > KEY_MAX:
        raise E.SOURCE_KEY_INVALID(source=source, reason=f"longer than {KEY_MAX} characters")
    if _ARMOR not in key or "-----END PGP PUBLIC KEY BLOCK-----" not in key:
        raise E.SOURCE_KEY_INVALID(source=source, reason=f"no {_ARMOR} ... END block")


def package_id(source: str, name: str, architecture: str, *, per_arch: bool) -> str:
    """``<source>-<name>`` (``-<arch>`` too when the source syncs several architectures and the
    package is not ``all``/``noarch``), characters outside [A-Za-z0-9_-] as ``_``, at most 63."""
    raw = f"{source}-{name}" + (f"-{architecture}" if per_arch and architecture not in ANY_ARCH else "")
    return _UNSAFE.sub("_", raw)[:ID_MAX]


def per_arch(kind: str, architectures: Sequence[str]) -> bool:
    """Whether package ids carry the architecture: several synced (an rpm source with no filter
    syncs every architecture its repository has)."""
    return len(architectures) > 1 or (kind == "rpm" and not architectures)


def compare_versions(kind: str, left: str, right: str) -> int:
    return compare_rpm(left, right) if kind == "rpm" else compare_debian(left, right)


def newest(
    offered: Sequence[OfferedPackage], source: str, *, per_arch: bool, kind: str = "deb"
) -> dict[str, OfferedPackage]:
    """Per package id, the offered entry of the highest version (a sync may list several)."""
    best: dict[str, OfferedPackage] = {}
    for entry in offered:
        pid = package_id(source, entry.name, entry.architecture, per_arch=per_arch)
        if pid not in best or compare_versions(kind, entry.version, best[pid].version) > 0:
            best[pid] = entry
    return best
