"""One vocabulary: the state each execution event leads to, and the label operators read."""

from __future__ import annotations

import uuid

import pytest

from dpm_scenarios import ACTIVE, ENDED, OPEN, ExecutionState, label, label_after, started_state, state_after
from dpm_schemas.events import ExecutionStarted, ExecutionWaiting, StepReported
from dpm_schemas.events.executions import StartAction, StepStatus

ONE = uuid.UUID(int=1)


@pytest.mark.parametrize(
    ("action", "netboot", "state"),
    [
        (StartAction.RUN, False, ExecutionState.RUNNING),
        (StartAction.WAKE, True, ExecutionState.WAITING_BOOT),
        (StartAction.WAKE, False, ExecutionState.WAITING_ONLINE),
        (StartAction.REBOOT, True, ExecutionState.WAITING_BOOT),
        (StartAction.REBOOT, False, ExecutionState.WAITING_BOOT),
    ],
)
def test_started_state(action, netboot, state) -> None:
    assert started_state(action, netboot=netboot) is state


@pytest.mark.parametrize(
    ("event", "public"),
    [
        (ExecutionStarted(execution_id=ONE, machine_id=ONE, action=StartAction.WAKE), "powering-on"),
        (ExecutionStarted(execution_id=ONE, machine_id=ONE, action=StartAction.REBOOT), "rebooting"),
        (ExecutionStarted(execution_id=ONE, machine_id=ONE, action=StartAction.RUN), "running"),
        (ExecutionWaiting(execution_id=ONE, machine_id=ONE), "waiting"),
        (StepReported(execution_id=ONE, step="x", status=StepStatus.PROGRESS), None),
    ],
)
def test_the_apis_labels_come_from_the_same_states(event, public) -> None:
    assert label_after(event) == public


def test_every_state_has_a_label_and_one_class() -> None:
    for state in ExecutionState:
        assert label(state)
        assert (state in ACTIVE) + (state in ENDED) + (state is ExecutionState.QUEUED) == 1
    assert ACTIVE | {ExecutionState.QUEUED} == OPEN
    assert state_after(object()) is None
