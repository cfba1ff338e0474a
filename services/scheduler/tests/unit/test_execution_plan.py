"""How an execution starts (seed catalog §3.2): one case per rule."""

from __future__ import annotations

import pytest

from dpm_scheduler.executions.plan import Refuse, Start, Wait, plan_start
from dpm_schemas.events.executions import StartAction
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec


@pytest.mark.parametrize("kind", ["backup", "restore", "disk-check", "os-install", "firmware"])
def test_netboot_kinds_wake_a_powered_off_machine_and_wait_for_its_network_boot(kind: str) -> None:
    assert plan_start(ScenarioSpec(kind=ScenarioKind(kind)), online=False) == Start(StartAction.WAKE, Wait.BOOT, True)


def test_a_powered_on_machine_is_rebooted_only_with_reboot_at_start() -> None:
    spec = ScenarioSpec(kind=ScenarioKind.BACKUP, reboot_at_start=True)
    assert plan_start(spec, online=True) == Start(StartAction.REBOOT, Wait.BOOT, True)
    assert isinstance(plan_start(ScenarioSpec(kind=ScenarioKind.BACKUP), online=True), Refuse)


def test_remote_updates_need_the_agent_and_never_reboot_first() -> None:
    spec = ScenarioSpec(kind=ScenarioKind.REMOTE_UPDATE, reboot_at_start=True)
    assert plan_start(spec, online=True) == Start(StartAction.RUN, Wait.NOTHING, False)
    assert plan_start(spec, online=False) == Start(StartAction.WAKE, Wait.ONLINE, False)


def test_simulated_steps_start_at_once() -> None:
    assert plan_start(ScenarioSpec(kind=ScenarioKind.SIMULATED), online=False).action is StartAction.RUN  # type: ignore[union-attr]
