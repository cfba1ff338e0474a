"""How an execution starts (seed catalog §3.2): one case per rule."""

from __future__ import annotations

import pytest

from dpm_scenarios import Refuse, SessionStart, Start, plan_start, session_start
from dpm_scenarios.planning import BOOT, NOTHING, ONLINE
from dpm_schemas.events.executions import StartAction
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec


@pytest.mark.parametrize("kind", ["backup", "restore", "disk-check", "os-install", "firmware"])
def test_netboot_kinds_wake_a_powered_off_machine_and_wait_for_its_network_boot(kind: str) -> None:
    assert plan_start(ScenarioSpec(kind=ScenarioKind(kind)), online=False) == Start(StartAction.WAKE, BOOT, True)


def test_a_powered_on_machine_is_rebooted_only_with_reboot_at_start() -> None:
    spec = ScenarioSpec(kind=ScenarioKind.BACKUP, reboot_at_start=True)
    assert plan_start(spec, online=True) == Start(StartAction.REBOOT, BOOT, True)
    assert isinstance(plan_start(ScenarioSpec(kind=ScenarioKind.BACKUP), online=True), Refuse)


def test_remote_updates_need_the_agent_and_never_reboot_first() -> None:
    spec = ScenarioSpec(kind=ScenarioKind.REMOTE_UPDATE, reboot_at_start=True)
    assert plan_start(spec, online=True) == Start(StartAction.RUN, NOTHING, False)
    assert plan_start(spec, online=False) == Start(StartAction.WAKE, ONLINE, False)


def test_simulated_steps_start_at_once() -> None:
    assert plan_start(ScenarioSpec(kind=ScenarioKind.SIMULATED), online=False).action is StartAction.RUN  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("ready", "waited", "max_targets", "max_wait", "start_now", "expected"),
    [
        (3, 0, 3, None, False, SessionStart(3, "max-targets")),
        (2, 0, 3, None, False, None),  # restore without max wait: waits for max targets
        (2, 5, 3, 5, False, SessionStart(2, "max-wait")),  # only the ready ones start
        (2, 4, 3, 5, False, None),
        (2, 0, 3, None, True, SessionStart(2, "start-now")),
        (4, 0, 3, None, False, SessionStart(3, "max-targets")),  # the fourth waits for the next session
        (7, 0, 10, None, False, SessionStart(5, "max-targets")),  # limit 5, max targets 10: batches of 5
        (2, 0, None, None, False, SessionStart(2, "immediately")),
        (0, 99, 3, 5, True, None),
    ],
)
def test_when_a_multicast_session_starts(ready, waited, max_targets, max_wait, start_now, expected) -> None:
    got = session_start(
        ready=ready, waited=waited, max_targets=max_targets, max_wait=max_wait, start_now=start_now, limit=5
    )
    assert got == expected
