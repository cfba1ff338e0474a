"""The agent's own upgrade, decided without I/O (issue 14): when the agent package goes first, and
what a hello or the upgrade's end means for a step held for it (table-driven)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dpm_schemas.packages import AGENT_PACKAGE_ID, Package, PackageType
from dpm_updater.domain import agent_upgrade
from dpm_updater.domain.agent_upgrade import Next, Wait
from dpm_updater.domain.delivery import Stored

SERVER = "0.2.0"
AGENT = Stored(Package(id=AGENT_PACKAGE_ID, type=PackageType.SCRIPT, system_version=SERVER, revision=3), "ab" * 32,
               10, "agent.tar")  # fmt: skip
E1, M = uuid.UUID(int=1), uuid.UUID(int=2)
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=120)


@pytest.mark.parametrize(
    ("version", "package", "wanted"),
    [
        ("0.1.0", AGENT, True),
        (SERVER, AGENT, False),  # current already
        ("", AGENT, False),  # no hello recorded: not judged
        (None, AGENT, False),
        ("0.1.0", None, False),  # no agent package registered: shown as outdated only
        ("0.1.0", replace(AGENT, package=AGENT.package.model_copy(update={"system_version": "0.1.5"})), False),
        ("0.1.0", replace(AGENT, package=AGENT.package.model_copy(update={"system_version": f"{SERVER}-1"})), True),
    ],
)
def test_the_agent_package_goes_first_only_to_an_outdated_agent(
    version: str | None, package: Stored | None, wanted: bool
) -> None:
    assert (agent_upgrade.needed(version, package, SERVER) is not None) is wanted


def test_the_upgrade_goes_alone_and_says_what_it_does() -> None:
    plan = agent_upgrade.plan(AGENT, "0.1.0", SERVER)
    assert [i.package.id for i in plan.items] == [AGENT_PACKAGE_ID] and plan.items[0].sha256 == "ab" * 32
    assert plan.skipped == (f"{AGENT_PACKAGE_ID}: upgrading the agent from 0.1.0 to {SERVER}",)
    assert agent_upgrade.upgrade_id(E1) == agent_upgrade.upgrade_id(E1) != agent_upgrade.upgrade_id(M)


def wait(installed: bool = False) -> Wait:
    return Wait(execution_id=E1, machine_id=M, upgrade_id=agent_upgrade.upgrade_id(E1), current="0.1.0",
                installed_at=T0 if installed else None)  # fmt: skip


@pytest.mark.parametrize(
    ("held", "version", "changed", "next_", "code"),
    [
        (wait(), SERVER, True, Next.RESUME, None),  # restarted within the timeout at the new version
        (wait(), SERVER, False, Next.RESUME, None),  # came back after going offline
        (wait(), "0.1.0", False, Next.WAIT, None),  # the old agent reconnected before the install ran
        (wait(installed=True), "0.1.0", False, Next.FAIL, "DPM-E218"),  # installed, yet still the old one
        (wait(), "0.1.5", True, Next.FAIL, "DPM-E218"),  # changed to neither
    ],
)
def test_a_hello_resumes_waits_or_fails_the_held_step(
    held: Wait, version: str, changed: bool, next_: Next, code: str | None
) -> None:
    verdict = agent_upgrade.on_hello(held, version, changed=changed, server=SERVER)
    assert verdict.next is next_
    assert (verdict.error.code if verdict.error else None) == code


def test_a_failed_upgrade_fails_the_held_step_with_the_installers_code() -> None:
    verdict = agent_upgrade.on_install(wait(), False, "DPM-E234", "exit status 3: no space", server=SERVER)
    assert verdict.next is Next.FAIL and verdict.error is not None
    assert verdict.error.code == "DPM-E217" and "DPM-E234" in verdict.error.message
    assert "no space" in verdict.error.message
    assert agent_upgrade.on_install(wait(), True, None, "", server=SERVER).next is Next.WAIT


@pytest.mark.parametrize(
    ("held", "version", "later", "next_", "code"),
    [
        (wait(), SERVER, 0, Next.RESUME, None),  # its hello was handled before the step was held
        (wait(), "0.1.0", 3600, Next.WAIT, None),  # not installed yet: the step's watchdog bounds it
        (wait(installed=True), "0.1.0", 119, Next.WAIT, None),  # still restarting
        (wait(installed=True), "0.1.0", 120, Next.FAIL, "DPM-E218"),  # back at the old version, no event
        (wait(installed=True), None, 600, Next.FAIL, "DPM-E218"),
    ],
)
def test_the_timer_settles_what_no_event_says(
    held: Wait, version: str | None, later: int, next_: Next, code: str | None
) -> None:
    verdict = agent_upgrade.on_tick(held, version, T0 + timedelta(seconds=later), GRACE, server=SERVER)
    assert verdict.next is next_
    assert (verdict.error.code if verdict.error else None) == code
