"""The applicability engine, table-driven: one row per reason the engine can give."""

from __future__ import annotations

from typing import Any

import pytest

from dpm_packages.applicability import Verdict, assess, explain, install_order
from dpm_packages.inventory import Inventory, OsFamily, from_reported
from dpm_packages.versions import VersionScheme
from dpm_schemas.packages import Package

XP = "Windows XP Professional"


def pkg(**fields: Any) -> Package:
    return Package.model_validate({"type": "hotfix"} | fields)


def win(**facts: Any) -> Inventory:
    return Inventory(os_name=XP, os_family=OsFamily.WINDOWS, **facts)


DEB = Inventory(
    os_name="Debian GNU/Linux 12", package_system=VersionScheme.DEBIAN, packages={"openssl": "3.0.11-1~deb12u2"}
)

ROWS = [
    ("os-mismatch", Verdict.NOT_APPLICABLE, DEB, [pkg(id="h", os=[XP])]),
    ("language-mismatch", Verdict.NOT_APPLICABLE, win(languages=("en",)), [pkg(id="h", languages=["ja"])]),
    ("architecture-mismatch", Verdict.NOT_APPLICABLE, win(architecture="x86"), [pkg(id="h", architectures=["amd64"])]),
    ("recorded-applied", Verdict.APPLIED, win(applied={"h": 0}), [pkg(id="h")]),
    ("ms-number-applied", Verdict.APPLIED, win(hotfixes=frozenset({"KB1"})), [pkg(id="h", ms_number="KB1")]),
    (
        "installed-newer",
        Verdict.APPLIED,
        win(applications={"App": "2.0"}),
        [pkg(id="h", type="application", display_name="App", display_version="1.5")],
    ),
    (
        "display-version-applied",
        Verdict.APPLIED,
        win(applications={"App": "1.5"}),
        [pkg(id="h", type="application", display_name="App", display_version="1.5")],
    ),
    (
        "identification-applied",
        Verdict.APPLIED,
        win(files={"C:\\a.dll": "5.1.2600.5512"}),
        [pkg(id="h", identification=[{"path": "C:\\a.dll", "version": "5.1.2600.2180", "change": "version-up"}])],
    ),
    ("files-unknown", Verdict.UNKNOWN, win(), [pkg(id="h", identification=[{"path": "a", "change": "new"}])]),
    ("installed-newer", Verdict.APPLIED, DEB, [pkg(id="openssl", type="deb", system_version="3.0.11-1~deb12u1")]),
    (
        "installed-version-applied",
        Verdict.APPLIED,
        DEB,
        [pkg(id="openssl", type="deb", system_version="3.0.11-1~deb12u2")],
    ),
    ("installable", Verdict.APPLICABLE, DEB, [pkg(id="openssl", type="deb", system_version="1:3.0.0-1")]),
    ("installable", Verdict.APPLICABLE, DEB, [pkg(id="openssl", type="deb", system_version="3.0.11-1")]),
    ("packages-unknown", Verdict.UNKNOWN, Inventory(os_name="Debian"), [pkg(id="x", type="deb", system_version="1")]),
    (
        "service-pack-applied",
        Verdict.APPLIED,
        win(service_pack=(2, 0)),
        [pkg(id="sp2", type="service-pack", major_version=2, minor_version=0)],
    ),
    (
        "service-pack-unknown",
        Verdict.UNKNOWN,
        win(),
        [pkg(id="sp2", type="service-pack", major_version=2, minor_version=0)],
    ),
    ("needs-service-pack", Verdict.NOT_APPLICABLE, win(), [pkg(id="h", base_service_pack="sp2")]),
    ("absorbed", Verdict.APPLIED, win(applied={"sp3": 0}), [pkg(id="h", absorbed_service_packs=["sp3"])]),
    ("needs", Verdict.NOT_APPLICABLE, win(), [pkg(id="h", requires=["other"])]),
    (
        "condition-not-met",
        Verdict.NOT_APPLICABLE,
        win(registry={}),
        [pkg(id="h", conditions=[{"kind": "registry", "key": "HKLM\\X", "value": "CSDVersion"}])],
    ),
    (
        "installable",
        Verdict.APPLICABLE,
        win(registry={"HKLM\\X\\CSDVersion": "Service Pack 1"}),
        [
            pkg(
                id="h",
                conditions=[{"kind": "registry", "key": "HKLM\\X", "value": "CSDVersion", "data": "Service Pack 1"}],
            )
        ],
    ),
    (
        "condition-unknown",
        Verdict.UNKNOWN,
        DEB,
        [pkg(id="h", conditions=[{"kind": "command-exit", "command": "true"}])],
    ),
    (
        "installable",
        Verdict.APPLICABLE,
        DEB.model_copy(update={"probes": {"true": 0}}),
        [pkg(id="h", conditions=[{"kind": "command-exit", "command": "true"}])],
    ),
    (
        "condition-not-met",
        Verdict.NOT_APPLICABLE,
        DEB.model_copy(update={"files": {}}),
        [pkg(id="h", conditions=[{"kind": "file-exists", "path": "/etc/x"}])],
    ),
    (
        "condition-not-met",
        Verdict.NOT_APPLICABLE,
        DEB,
        [
            pkg(
                id="h",
                conditions=[{"kind": "package-installed", "name": "openssl", "operator": "ge", "version": "3.1"}],
            )
        ],
    ),
    (
        "installable",
        Verdict.APPLICABLE,
        DEB,
        [
            pkg(
                id="h",
                conditions=[{"kind": "package-installed", "name": "openssl", "operator": "lt", "version": "3.0.11-1"}],
            )
        ],
    ),
]


@pytest.mark.parametrize(("code", "verdict", "inventory", "packages"), ROWS)
def test_reason(code: str, verdict: Verdict, inventory: Inventory, packages: list[Package]) -> None:
    (result,) = [a for a in assess(inventory, packages) if a.package_id == packages[0].id]
    assert result.verdict is verdict
    assert code in [r.code for r in result.reasons]


def test_only_newest_service_pack_is_offered() -> None:
    sps = [pkg(id=f"sp{n}", type="service-pack", major_version=n, minor_version=0, os=[XP]) for n in (1, 2, 3)]
    results = {a.package_id: a for a in assess(win(service_pack=(0, 0)), sps)}
    assert results["sp3"].verdict is Verdict.APPLICABLE
    assert results["sp1"].reasons[0].text == "superseded by sp3"
    assert results["sp2"].verdict is Verdict.NOT_APPLICABLE


def test_dependencies_install_in_order_and_output_is_sorted() -> None:
    packages = [pkg(id="z-app", requires=["a-lib"]), pkg(id="a-lib"), pkg(id="m")]
    results = assess(win(), packages)
    assert [a.package_id for a in results] == ["a-lib", "m", "z-app"]
    assert "after" in [r.code for r in results[2].reasons]
    assert install_order(results, packages) == ("a-lib", "m", "z-app")
    assert install_order(results, [pkg(id="a-lib", requires=["z-app"]), *packages[:1], packages[2]])[-1] in {
        "a-lib",
        "z-app",
    }


def test_explain_renders_every_package() -> None:
    text = explain("m1", assess(DEB, [pkg(id="h", os=[XP])]))
    assert text.splitlines()[1].split()[:2] == ["h", "not-applicable"]
    assert "OS mismatch" in text


def test_from_reported_leaves_missing_facts_unknown() -> None:
    inv = from_reported("Debian GNU/Linux 12 (bookworm)", "6.1.0", ("openssl=3.0.11-1", "weird"))
    assert inv.os_family is OsFamily.LINUX
    assert inv.package_system is VersionScheme.DEBIAN
    assert inv.packages == {"openssl": "3.0.11-1", "weird": ""}
    assert inv.registry is None and inv.probes is None and inv.free_disk_bytes is None
