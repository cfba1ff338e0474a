"""A package source's settings as the api checks them, and the packages its syncs become (pure)."""

from __future__ import annotations

import pytest

from dpm_api.domain import sources as rules
from dpm_api.sources import saved_of
from dpm_schemas import DpmError
from dpm_schemas.events.sources import OfferedPackage

GOOD = {"name": "sec", "url": "https://deb.example.org/debian", "suite": "stable", "components": ["main"],
        "architectures": ["amd64"], "include": ["openssl"], "urgency": "highest", "interval_minutes": 60,
        "proxy": None, "verify_tls": True, "key": None}  # fmt: skip


def code(**change: object) -> str:
    with pytest.raises(DpmError) as err:
        saved_of({**GOOD, **change})
    return err.value.code


def test_a_good_source_and_each_refusal_with_its_code() -> None:
    saved = saved_of(GOOD)
    assert saved.source_id == saved_of({**GOOD, "url": "http://other/"}).source_id  # named by its name
    assert saved.include == ("openssl",) and saved.urgency.value == "highest"
    assert code(name="-x") == code(name="a b") == "DPM-E290"
    assert code(url="ftp://h/") == code(url="http://h:0/") == code(url="http:///x") == "DPM-E291"
    assert code(url="http://u:secret@h/") == "DPM-E291"
    assert code(proxy="https://p:3128") == code(proxy="http://p:3128/path") == "DPM-E291"
    assert code(suite="a/b") == code(components=[]) == code(architectures=["x y"]) == "DPM-E291"
    assert code(include=[]) == code(include=["*"]) == code(include=["a b"]) == "DPM-E292"
    assert code(key="-----BEGIN PGP PRIVATE KEY BLOCK-----") == "DPM-E293"


def test_a_proxy_password_is_never_shown() -> None:
    with pytest.raises(DpmError) as err:
        saved_of({**GOOD, "proxy": "http://u:secret@p:3128"})
    assert "secret" not in err.value.message


def test_package_ids_are_sanitised_and_bounded() -> None:
    assert rules.package_id("sec", "libssl3", "amd64", per_arch=False) == "sec-libssl3"
    assert rules.package_id("sec", "libstdc++6", "amd64", per_arch=True) == "sec-libstdc_6-amd64"
    assert rules.package_id("sec", "tzdata", "all", per_arch=True) == "sec-tzdata"
    assert len(rules.package_id("s", "x" * 100, "amd64", per_arch=False)) == 63


def test_the_highest_debian_version_of_a_package_is_offered() -> None:
    def o(version: str) -> OfferedPackage:
        return OfferedPackage(name="hello", version=version, architecture="all", sha256="a" * 64, size=1, filename="f")

    best = rules.newest([o("1.0~rc1"), o("1.0"), o("1:0.9"), o("1.0-1")], "s", per_arch=False)
    assert best["s-hello"].version == "1:0.9"  # the epoch wins
