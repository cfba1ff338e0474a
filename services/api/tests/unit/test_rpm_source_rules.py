"""A source's kind as the api checks it (pure): rpm sources have no suite or components, an unknown
kind is refused with its code, a SourceSaved recorded before kinds existed still folds as a deb
source, and rpm sources offer their highest version in rpm's ordering."""

from __future__ import annotations

import uuid

import pytest

from dpm_api.domain import sources as rules
from dpm_api.sources import saved_of
from dpm_schemas import DpmError, E
from dpm_schemas.events.sources import OfferedPackage, SourceSaved

RPM = {"name": "el9", "kind": "rpm", "url": "https://rpm.example.org/el9/BaseOS/x86_64/os", "suite": None,
       "components": None, "architectures": None, "include": ["openssl*"], "urgency": "high",
       "interval_minutes": 60, "proxy": None, "verify_tls": True, "key": None}  # fmt: skip


def refused(**change: object) -> DpmError:
    with pytest.raises(DpmError) as err:
        saved_of({**RPM, **change})
    return err.value


def test_an_rpm_source_has_no_suite_or_components_and_any_architecture() -> None:
    saved = saved_of(RPM)
    assert (saved.kind, saved.suite, saved.components, saved.architectures) == ("rpm", None, (), ())
    assert saved_of({**RPM, "architectures": ["x86_64"]}).architectures == ("x86_64",)
    deb = saved_of({**RPM, "kind": None})  # not given: deb, with its defaults
    assert (deb.kind, deb.suite, deb.components, deb.architectures) == ("deb", "stable", ("main",), ("amd64",))


def test_refusals_have_their_codes() -> None:
    for change in ({"kind": "apk"}, {"suite": "stable"}, {"components": ["main"]}, {"architectures": ["x 86"]}):
        err = refused(**change)
        assert err.code == E.SOURCE_FIELD_INVALID.code, change
    assert "kind" in refused(kind="apk").message


def test_a_source_saved_before_kinds_folds_as_deb() -> None:
    old = {"source_id": str(uuid.uuid4()), "name": "sec", "url": "http://deb.example.org/", "suite": "stable",
           "components": ["main"], "architectures": ["amd64"], "include": ["openssl"]}  # fmt: skip
    assert SourceSaved.model_validate(old).kind == "deb"
    with pytest.raises(ValueError):
        SourceSaved.model_validate({**old, "components": []})  # a deb source still needs them


def test_rpm_versions_and_ids() -> None:
    def o(version: str, arch: str = "x86_64") -> OfferedPackage:
        return OfferedPackage(name="openssl", version=version, architecture=arch, sha256="a" * 64, size=1, filename="f")

    best = rules.newest([o("3.0.7-24.el9"), o("3.0.7-27.el9"), o("1:3.0.1-1.el9")], "el9", per_arch=False, kind="rpm")
    assert best["el9-openssl"].version == "1:3.0.1-1.el9"  # the epoch wins
    assert rules.newest([o("3.0.10-1"), o("3.0.9-1")], "el9", per_arch=False, kind="rpm")["el9-openssl"].version == (
        "3.0.10-1"
    )
    assert rules.per_arch("rpm", ()) and not rules.per_arch("rpm", ("x86_64",)) and not rules.per_arch("deb", ("a",))
    assert rules.package_id("el9", "tzdata", "noarch", per_arch=True) == "el9-tzdata"
    assert rules.package_id("el9", "glibc", "i686", per_arch=True) == "el9-glibc-i686"
