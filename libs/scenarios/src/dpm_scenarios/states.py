"""One vocabulary for an execution's state, derived from its events (DESIGN.md §7).

The scheduler stores ``ExecutionState`` values; the api shows operators ``label(...)`` of the same
state, so the two can no longer drift apart ('waiting' is the label of READY, 'powering-on' and
'rebooting' those of the two waits that follow a start).
"""

from __future__ import annotations

from enum import StrEnum

from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionQueued,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
    StepCancelRequested,
    StepRequested,
)
from dpm_schemas.events.executions import StartAction


class ExecutionState(StrEnum):
    QUEUED = "queued"  # waiting for a slot (concurrency limit) and its not-before time
    WAITING_BOOT = "waiting_boot"  # woken or rebooted: waits for MachineBooted (DPM-E112 when none)
    WAITING_ONLINE = "waiting_online"  # woken: waits for MachineCameOnline (DPM-E113 when none)
    READY = "ready"  # where its multicast step needs it: waits for its session (no deadline)
    RUNNING = "running"  # the step was requested: waits for its report (DPM-E145 when none)
    SUSPENDING = "suspending"  # asked to stop: waits for the step's last report (suspend timeout)
    POWERING_OFF = "powering_off"  # the step completed; the agent's shutdown is pending (scheduler only)
    COMPLETED = "completed"
    FAILED = "failed"
    SUSPENDED = "suspended"


ACTIVE = frozenset(
    {
        ExecutionState.WAITING_BOOT,
        ExecutionState.WAITING_ONLINE,
        ExecutionState.READY,
        ExecutionState.RUNNING,
        ExecutionState.SUSPENDING,
        ExecutionState.POWERING_OFF,
    }
)  # each holds one slot of the concurrency limit and the machine
OPEN = ACTIVE | {ExecutionState.QUEUED}  # the machine is in a scenario
ENDED = frozenset({ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.SUSPENDED})


def started_state(action: StartAction, *, netboot: bool) -> ExecutionState:
    """Where a started execution waits: the network boot, the agent, or nothing (its step runs)."""
    if action is StartAction.RUN:
        return ExecutionState.RUNNING
    if netboot or action is StartAction.REBOOT:
        return ExecutionState.WAITING_BOOT
    return ExecutionState.WAITING_ONLINE


_AFTER: dict[type, ExecutionState] = {
    ExecutionQueued: ExecutionState.QUEUED,
    ExecutionWaiting: ExecutionState.READY,
    StepRequested: ExecutionState.RUNNING,
    StepCancelRequested: ExecutionState.SUSPENDING,
    ExecutionSuspended: ExecutionState.SUSPENDED,
    ExecutionCompleted: ExecutionState.COMPLETED,
    ExecutionFailed: ExecutionState.FAILED,
}


def state_after(event: object, *, netboot: bool = False) -> ExecutionState | None:
    """The state an execution's event puts it in; None for events that change no state (reports)."""
    if isinstance(event, ExecutionStarted):
        return started_state(event.action, netboot=netboot)
    return _AFTER.get(type(event))


_LABELS = {
    ExecutionState.QUEUED: "queued",
    ExecutionState.WAITING_BOOT: "powering-on",
    ExecutionState.WAITING_ONLINE: "powering-on",
    ExecutionState.READY: "waiting",
    ExecutionState.RUNNING: "running",
    ExecutionState.SUSPENDING: "suspending",
    ExecutionState.POWERING_OFF: "running",
    ExecutionState.COMPLETED: "completed",
    ExecutionState.FAILED: "failed",
    ExecutionState.SUSPENDED: "suspended",
}


def label(state: ExecutionState, action: StartAction | None = None) -> str:
    """What operators read (the api's public state strings)."""
    if state is ExecutionState.WAITING_BOOT and action is StartAction.REBOOT:
        return "rebooting"
    return _LABELS[state]


def label_after(event: object) -> str | None:
    """The operator's label after ``event`` (the api's execution list folds the same events)."""
    state = state_after(event)
    if state is None:
        return None
    return label(state, event.action if isinstance(event, ExecutionStarted) else None)
