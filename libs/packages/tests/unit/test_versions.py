"""Version ordering by each packaging system's rules; Debian cases cross-checked with the host's dpkg."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from dpm_packages.versions import compare_debian, compare_dotted, compare_rpm, rpmvercmp

DEBIAN = [
    ("1:1.0", "2.0", 1),
    ("1.0~rc1", "1.0", -1),
    ("1.0~~", "1.0~", -1),
    ("1.0", "1.0-0", 0),
    ("1.0-1", "1.0-2", -1),
    ("1.0-1ubuntu1", "1.0-1", 1),
    ("1.0a", "1.0", 1),
    ("1.10", "1.9", 1),
    ("1.0+dfsg", "1.0", 1),
    ("0:1.0", "1.0", 0),
    ("2.30-1~deb12u1", "2.30-1", -1),
]


@pytest.mark.parametrize(("left", "right", "expected"), DEBIAN)
def test_debian_order(left: str, right: str, expected: int) -> None:
    assert compare_debian(left, right) == expected


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg not on this host")
@pytest.mark.parametrize(("left", "right", "expected"), DEBIAN)
def test_debian_order_matches_dpkg(left: str, right: str, expected: int) -> None:
    op = {-1: "lt", 0: "eq", 1: "gt"}[expected]
    assert subprocess.run(["dpkg", "--compare-versions", left, op, right], check=False).returncode == 0


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1.0", "1.0", 0),
        ("1.0", "1.0.1", -1),
        ("1.0~rc1", "1.0", -1),
        ("1.0~rc1", "1.0~rc2", -1),
        ("1.0^git1", "1.0", 1),
        ("1.0^git1", "1.0.1", -1),
        ("1.0^", "1.0~", 1),
        ("1.0a", "1.0.1", -1),  # numeric segment beats alpha
        ("1.010", "1.9", 1),
        ("1.01", "1.1", 0),
        ("fc4", "fc.4", 0),  # separators only split
        ("2.0", "2_0", 0),
    ],
)
def test_rpmvercmp(left: str, right: str, expected: int) -> None:
    assert rpmvercmp(left, right) == expected
    assert rpmvercmp(right, left) == -expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1:1.0-1", "2.0-1", 1),
        ("1.0-2", "1.0-10", -1),
        ("1.0", "1.0-5", 0),  # no release: matches any
        ("3.0.7-27.el9", "3.0.7-24.el9", 1),
    ],
)
def test_rpm_evr(left: str, right: str, expected: int) -> None:
    assert compare_rpm(left, right) == expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [("5.1.2600.5512", "5.1.2600.2180", 1), ("1.0", "1.0.0", 0), ("1.10", "1.9", 1), ("2", "10", -1)],
)
def test_dotted(left: str, right: str, expected: int) -> None:
    assert compare_dotted(left, right) == expected
