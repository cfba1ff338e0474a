"""Version ordering by each packaging system's own rules.

"Installed version is newer" must mean what dpkg or rpm would say, or dpm offers a downgrade (or
hides an update). So Debian versions are compared by python-debian (the Debian Policy §5.6.12
algorithm: epoch, upstream with ``~`` sorting before everything, revision), RPM versions by a faithful
port of rpm's ``rpmvercmp`` (lib/rpmvercmp.c), and Windows file/display versions by dotted integers.
"""

from __future__ import annotations

import re
from enum import StrEnum

from debian.debian_support import Version as DebianVersion

from dpm_schemas.errors import E


class VersionScheme(StrEnum):
    """Which ordering a version string follows: the packaging system that wrote it."""

    DEBIAN = "deb"
    RPM = "rpm"
    DOTTED = "dotted"


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def compare_debian(left: str, right: str) -> int:
    """-1, 0 or 1 as ``dpkg --compare-versions`` orders the two (python-debian's implementation)."""
    try:
        a, b = DebianVersion(left), DebianVersion(right)
        return (a > b) - (a < b)  # the public operators (Version._compare is private)
    except ValueError as exc:
        raise E.PACKAGE_VERSION_INVALID(system="Debian", value=f"{left} / {right}", reason=str(exc)) from None


_RPM_SEGMENT = re.compile(r"(\d+|[A-Za-z]+|~|\^)")


def _rpm_segment(x: str | None, y: str | None) -> int | None:
    """The order one pair of segments decides, or None when it is a tie and the next pair decides."""
    if x == y:
        return None if x is not None else 0
    for special in ("~", "^"):
        if x == special or y == special:
            if special == "^" and (x is None or y is None):
                return -1 if x is None else 1  # "^" sorts after the end of the string
            return -1 if x == special else 1  # "~" before anything; "^" before any other segment
    if x is None or y is None:
        return -1 if x is None else 1
    if x.isdigit() != y.isdigit():
        return 1 if x.isdigit() else -1
    if x.isdigit():
        return _sign(int(x) - int(y)) or None
    return -1 if x < y else 1


def rpmvercmp(left: str, right: str) -> int:
    """rpm's ``rpmvercmp`` for one field (version or release): -1, 0 or 1.

    Algorithm (rpm lib/rpmvercmp.c): skip separators (anything not alphanumeric, ``~`` or ``^``);
    ``~`` sorts before anything, even the end of the string (pre-releases); ``^`` sorts after the end
    but before any other segment (post-release snapshots); a numeric segment is newer than an alpha
    one; numeric segments compare as integers (leading zeros ignored), alpha ones bytewise; when one
    string runs out, the one with segments left is newer.
    """
    a = _RPM_SEGMENT.findall(left)
    b = _RPM_SEGMENT.findall(right)
    for index in range(max(len(a), len(b)) + 1):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        decided = _rpm_segment(x, y)
        if decided is not None:
            return decided
    return 0


def _split_evr(value: str) -> tuple[int, str, str]:
    epoch, _, rest = value.rpartition(":") if ":" in value else ("0", "", value)
    if not epoch.isdigit():
        raise E.PACKAGE_VERSION_INVALID(system="RPM", value=value, reason="the epoch is not a number")
    version, _, release = rest.partition("-") if "-" in rest else (rest, "", "")
    if "-" in release:
        version, _, release = rest.rpartition("-")
    return int(epoch), version, release


def compare_rpm(left: str, right: str) -> int:
    """``[epoch:]version[-release]`` as rpm orders them; a missing release matches any (as rpm's deps)."""
    le, lv, lr = _split_evr(left)
    re_, rv, rr = _split_evr(right)
    if le != re_:
        return _sign(le - re_)
    by_version = rpmvercmp(lv, rv)
    if by_version or not lr or not rr:
        return by_version
    return rpmvercmp(lr, rr)


def compare_dotted(left: str, right: str) -> int:
    """Windows file and display versions: dot-separated integers, missing parts count as 0.

    A non-numeric part falls back to text order for that part, so "1.0a" still sorts deterministically.
    """

    def parts(value: str) -> list[tuple[int, int | str]]:
        return [(0, int(p)) if p.isdigit() else (1, p) for p in value.strip().split(".")]

    a, b = parts(left), parts(right)
    width = max(len(a), len(b))
    a += [(0, 0)] * (width - len(a))
    b += [(0, 0)] * (width - len(b))
    for x, y in zip(a, b, strict=True):
        if x != y:
            return -1 if (x[0], str(x[1]).zfill(20)) < (y[0], str(y[1]).zfill(20)) else 1
    return 0


def compare(scheme: VersionScheme, left: str, right: str) -> int:
    """Compare two versions by the scheme's rules: -1 (left older), 0 (equal), 1 (left newer)."""
    if scheme is VersionScheme.DEBIAN:
        return compare_debian(left, right)
    if scheme is VersionScheme.RPM:
        return compare_rpm(left, right)
    return compare_dotted(left, right)
