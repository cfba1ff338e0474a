"""Every field refusal carries its own code and names its field (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from dpm_packages.validation import package_problems, parse_package, parse_release_date
from dpm_schemas.errors import DpmError
from dpm_schemas.packages import PackageType, Urgency
from dpm_schemas.version import DPM_VERSION

BASE: dict[str, Any] = {"id": "KB889101", "type": "hotfix"}
SP: dict[str, Any] = {"id": "XPSP2", "type": "service-pack", "major_version": 2, "minor_version": 0}

CASES = [
    ({"id": ""}, "DPM-E200", "id"),
    ({"id": "a" * 64}, "DPM-E200", "id"),
    ({"id": "bad id"}, "DPM-E200", "id"),
    ({"id": "ÿ"}, "DPM-E200", "id"),
    ({"company": "é" * 64}, "DPM-E201", "company"),  # 128 UTF-8 bytes, 64 characters
    ({"summary": "x" * 512}, "DPM-E202", "summary"),
    ({"release_date": "2026/02/30"}, "DPM-E203", "release_date"),
    ({"release_date": "2026/2/3"}, "DPM-E203", "release_date"),
    ({"release_date": "2026-02/03"}, "DPM-E203", "release_date"),
    ({"type": "msi"}, "DPM-E204", "type"),
    ({"urgency": "urgent"}, "DPM-E205", "urgency"),
    ({"ms_number": "K" * 32}, "DPM-E206", "ms_number"),
    ({"execution": {"command": "a" * 200, "parameters": "b" * 59}}, "DPM-E208", "execution.command"),
    ({"identification": [{"path": "a.txt", "change": "rewrite"}]}, "DPM-E210", "identification[0]"),
    ({"identification": [{"path": "a.txt", "change": "version-up"}]}, "DPM-E210", "identification[0]"),
    (
        {"conditions": [{"kind": "package-installed", "name": "openssl", "operator": "ge"}]},
        "DPM-E211",
        "conditions[0].version",
    ),
    ({"summary": "a\x00b"}, "DPM-E212", "summary"),
    ({"display_name": "App"}, "DPM-E215", "display_version"),
    ({"display_version": "1.0"}, "DPM-E215", "display_name"),
    ({"id": "dpm-agent", "type": "script"}, "DPM-E216", "system_version"),  # the agent's own: no version
    ({"id": "dpm-agent", "type": "deb", "system_version": "0.0.1"}, "DPM-E216", "system_version"),  # a downgrade
]


def test_the_agent_package_registers_at_the_server_version_only() -> None:
    package = parse_package({"id": "dpm-agent", "type": "script", "system_version": DPM_VERSION})
    assert package.system_version == DPM_VERSION
    for built in (f"{DPM_VERSION}-1", f"1:{DPM_VERSION}-2", f"{DPM_VERSION}-1.el9"):  # a .deb's or .rpm's version
        assert parse_package({"id": "dpm-agent", "type": "deb", "system_version": built}).system_version == built


@pytest.mark.parametrize(("change", "code", "field"), CASES)
def test_each_refusal_has_its_code_and_field(change: dict[str, Any], code: str, field: str) -> None:
    problems, package = package_problems(BASE | change)
    assert package is None
    assert (code, field) in {(p.code, p.details["field"]) for p in problems}


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"major_version": None}, "DPM-E207", "major_version"),
        ({"minor_version": None}, "DPM-E207", "minor_version"),
        ({"base_service_pack": "SP1"}, "DPM-E209", "base_service_pack"),
        ({"absorbed_service_packs": ["SP1"]}, "DPM-E209", "absorbed_service_packs"),
        ({"identification": [{"path": "a.dll", "version": "1.0", "change": "new"}]}, "DPM-E209", "identification"),
    ],
)
def test_service_pack_rules(change: dict[str, Any], code: str, field: str) -> None:
    problems, _ = package_problems(SP | change)
    assert (code, field) in {(p.code, p.details["field"]) for p in problems}


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(DpmError) as caught:
        parse_package({"id": "bad id", "type": "service-pack", "summary": "x" * 600})
    assert caught.value.code == "DPM-E213"
    fields = [p["field"] for p in caught.value.details["problems"]]
    assert fields == ["id", "summary", "major_version", "minor_version"]


def test_single_problem_raises_its_own_code() -> None:
    with pytest.raises(DpmError) as caught:
        parse_package(BASE | {"urgency": "urgent"})
    assert caught.value.code == "DPM-E205"


def test_valid_package_and_defaults() -> None:
    package = parse_package(SP | {"release_date": "2004/08/25", "company": "é" * 63})
    assert package.type is PackageType.SERVICE_PACK
    assert package.urgency is Urgency.NORMAL
    assert str(package.release_date) == "2004-08-25"


def test_unversioned_file_with_new_or_delete_is_fine() -> None:
    entries = [{"path": "a.txt", "change": "new"}, {"path": "b.txt", "change": "delete"}]
    assert parse_package(BASE | {"identification": entries}).identification[1].change == "delete"


def test_legacy_command_limit_only_for_windows_types() -> None:
    long = {"execution": {"command": "/usr/bin/x", "parameters": "y" * 400}}
    assert parse_package({"id": "s", "type": "script"} | long).execution.parameters == "y" * 400


def test_release_date_forms() -> None:
    assert str(parse_release_date("2026-12-02")) == "2026-12-02"
    assert parse_release_date("") is None
