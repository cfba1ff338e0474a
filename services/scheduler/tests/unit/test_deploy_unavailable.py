"""pxe's DeployBootUnavailable fails a network-booting execution at once with its code (issue 21):
no wait for the no-response timeout (DPM-E145), the slot and the netboot request freed."""

from __future__ import annotations

import uuid

import pytest

from dpm_scenarios import ACTIVE
from dpm_scenarios import ExecutionState as S
from dpm_scheduler.domain.decide import decide_deploy_unavailable
from dpm_scheduler.domain.execution import Execution
from dpm_schemas.events import DeployBootUnavailable, ExecutionFailed, NetbootCleared
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec


def ex(state: S, *, netboot: bool = True, kind: str = "disk-check") -> Execution:
    return Execution(
        execution_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        machine_id=uuid.uuid4(),
        scenario_id=uuid.uuid4(),
        name="check",
        spec=ScenarioSpec(kind=ScenarioKind(kind)),
        state=state,
        netboot=netboot,
    )


def report(x: Execution) -> DeployBootUnavailable:
    return DeployBootUnavailable(
        machine_id=x.machine_id,
        execution_id=x.execution_id,
        mac="52:54:00:00:00:01",
        path="/srv/dpm/boot/deploy/vmlinuz",
        code="DPM-E430",
        reason="pc-01 cannot network-boot the deploy environment: the deploy kernel deploy/vmlinuz is not there",
    )


@pytest.mark.parametrize("state", [S.WAITING_BOOT, S.READY, S.RUNNING])
def test_a_netboot_execution_fails_at_once_with_pxes_code(state: S) -> None:
    x = ex(state)
    d = decide_deploy_unavailable(x, report(x))
    assert d is not None
    cleared, failed = d.events
    assert isinstance(cleared, NetbootCleared) and cleared.execution_id == x.execution_id
    assert isinstance(failed, ExecutionFailed) and failed.code == "DPM-E430"
    assert "deploy/vmlinuz is not there" in failed.reason
    assert d.execution.state is S.FAILED and d.execution.state not in ACTIVE  # its slot is free
    assert d.execution.deadline is None and not d.execution.netboot


@pytest.mark.parametrize("state", [S.QUEUED, S.SUSPENDING, S.POWERING_OFF, S.COMPLETED, S.FAILED, S.SUSPENDED])
def test_an_execution_not_waiting_for_its_deploy_environment_is_left_alone(state: S) -> None:
    x = ex(state)
    assert decide_deploy_unavailable(x, report(x)) is None


def test_an_execution_whose_netboot_was_cleared_is_left_alone() -> None:
    x = ex(S.RUNNING, netboot=False)  # a late fact: its deploy environment already reported
    assert decide_deploy_unavailable(x, report(x)) is None
