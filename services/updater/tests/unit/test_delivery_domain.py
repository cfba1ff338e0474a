"""The remote-update step's decisions without I/O: parameters, what is delivered in which order and
what is skipped, and what a delivery token allows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dpm_packages import from_reported
from dpm_schemas import DpmError
from dpm_schemas.agent_protocol import InstallWhen
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.packages import Package
from dpm_updater.domain.delivery import Grant, Stored, check_grant, content_ids, plan, request_of

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SHA = "a" * 64


def spec(**params: str) -> ScenarioSpec:
    return ScenarioSpec(kind=ScenarioKind.REMOTE_UPDATE, params=params)


def deb(pid: str, version: str, *, requires: tuple[str, ...] = (), os: tuple[str, ...] = ()) -> Stored:
    p = Package(id=pid, type="deb", system_version=version, requires=requires, os=os, revision=1)
    return Stored(p, SHA, 10, f"{pid}.deb")


def code(fn, *args, **kwargs) -> str:
    with pytest.raises(DpmError) as err:
        fn(*args, **kwargs)
    return err.value.code


def test_parameters_parse_with_defaults_and_keep_order_without_repeats() -> None:
    r = request_of(spec(packages="b, a ,b"))
    assert (r.package_ids, r.when, r.at) == (("b", "a"), InstallWhen.NOW, None)
    timed = request_of(spec(packages="a", when="at-time", at="2027-01-01T03:00:00+01:00"))
    assert timed.at == datetime(2027, 1, 1, 2, 0, tzinfo=UTC)
    assert code(request_of, spec(packages=",".join(f"p{i}" for i in range(65)))) == "DPM-E282"


def test_delivers_the_applicable_packages_after_what_they_require_and_says_what_it_skipped() -> None:
    catalogue = {
        "tool": deb("tool", "2.0", requires=("lib",)),
        "lib": deb("lib", "1.0"),
        "old": deb("old", "1.0"),
        "win": Stored(Package(id="win", type="hotfix", os=("Windows Server 2022",), revision=3), None, 0, ""),
    }
    inventory = from_reported("Debian GNU/Linux 12 (bookworm)", "6.1.0", ["old=1.5"])
    got = plan(request_of(spec(packages="tool,lib,old,win")), catalogue, inventory)
    assert [i.package.id for i in got.items] == ["lib", "tool"]
    assert {s.split(":")[0] for s in got.skipped} == {"old", "win"}
    assert got.summary().startswith("delivering lib r1, tool r1; skipped ")
    assert content_ids(got.items) == (SHA,)  # one file, however many packages name it


def test_an_unknown_package_fails_the_step() -> None:
    inventory = from_reported("Debian GNU/Linux 12", "6.1.0", [])
    assert code(plan, request_of(spec(packages="nope")), {}, inventory) == "DPM-E276"


def grant(**changes) -> Grant:
    base = {"execution_id": uuid.uuid4(), "machine_id": uuid.uuid4(), "contents": (SHA,),
            "expires_at": NOW + timedelta(hours=1), "ended": False}  # fmt: skip
    return Grant(**{**base, **changes})


def test_a_token_opens_only_its_own_delivery_while_it_runs() -> None:
    g = grant()
    assert check_grant(g, NOW, sha256=SHA) is g
    assert check_grant(g, NOW, execution_id=g.execution_id) is g
    assert code(check_grant, None, NOW, sha256=SHA) == "DPM-E281"
    assert code(check_grant, g, NOW, sha256="b" * 64) == "DPM-E281"
    assert code(check_grant, g, NOW, execution_id=uuid.uuid4()) == "DPM-E281"
    assert code(check_grant, grant(ended=True), NOW, sha256=SHA) == "DPM-E281"
    assert code(check_grant, grant(expires_at=NOW), NOW, sha256=SHA) == "DPM-E281"


def test_an_exclusive_package_is_delivered_alone() -> None:
    lone = Stored(Package(id="kernel", type="script", execution={"command": "true", "exclusive": True}, revision=1),
                  None, 0, "")  # fmt: skip
    catalogue = {"kernel": lone, "lib": deb("lib", "1.0")}
    inventory = from_reported("Debian GNU/Linux 12 (bookworm)", "6.1.0", [])
    assert [i.package.id for i in plan(request_of(spec(packages="kernel")), catalogue, inventory).items] == ["kernel"]
    assert code(plan, request_of(spec(packages="kernel,lib")), catalogue, inventory) == "DPM-E282"
