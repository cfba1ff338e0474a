"""An execution as a frozen value, and ``evolve``: the fold of its events (DESIGN.md §7).

Timers (deadline, step due, ready since) are not in any event: the decisions set them from ``now``
-- the log time of the event decided on, or a round's clock, which is also the time of what the
round appends -- and the limits, so nothing here reads a clock. The anchors a later deadline needs
(``step_at``: the scenario timeout counts from the step's start; ``woken_at``: the power-on timeout
counts from the wake actually sent) are stored with the execution, so a restart recomputes nothing
from its own clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from dpm_scenarios import ExecutionState, state_after
from dpm_schemas.events import NetbootCleared, NetbootRequested
from dpm_schemas.events.scenarios import NETBOOT_KINDS, ScenarioSpec


@dataclass(frozen=True)
class Limits:
    concurrency: int = 5
    power_on_timeout: float = 600.0
    no_response_timeout: float = 1800.0
    suspend_timeout: float = 600.0  # the original advises about 10 minutes for an interrupt to complete


@dataclass(frozen=True)
class Execution:
    execution_id: uuid.UUID
    run_id: uuid.UUID
    machine_id: uuid.UUID
    scenario_id: uuid.UUID | None
    name: str  # the scenario's name
    spec: ScenarioSpec
    state: ExecutionState = ExecutionState.QUEUED
    netboot: bool = False  # pxe serves it the deploy environment (NetbootCleared at the end)
    deadline: datetime | None = None  # the watchdog of its state: the earliest of those that apply
    step_due: datetime | None = None  # a simulated step completes then
    ready_since: datetime | None = None  # waits for its multicast session since then
    step_at: datetime | None = None  # its step was requested then: the scenario timeout counts from here
    woken_at: datetime | None = None  # its start's wake or reboot was performed then (None: not yet)
    correlation_id: uuid.UUID | None = None  # of the run: every append on a timer path keeps it
    traceparent: str | None = None

    def after(self, now: datetime, seconds: float | None) -> datetime | None:
        return None if seconds is None else now + timedelta(seconds=seconds)

    @property
    def scenario_deadline(self) -> datetime | None:
        """When the scenario's own timeout ends: its step's start plus ``timeout_seconds``. No report,
        progress or suspend moves it."""
        return self.after(self.step_at, self.spec.timeout_seconds) if self.step_at is not None else None

    def capped(self, deadline: datetime) -> datetime:
        """``deadline``, but never later than the scenario's own deadline."""
        cap = self.scenario_deadline
        return deadline if cap is None else min(deadline, cap)


def evolve(x: Execution, event: object) -> Execution:
    """The execution after ``event`` (its state and whether pxe serves it); timers are the decisions'."""
    if isinstance(event, NetbootRequested):
        return replace(x, netboot=True)
    if isinstance(event, NetbootCleared):
        return replace(x, netboot=False)
    state = state_after(event, netboot=x.spec.kind in NETBOOT_KINDS)
    return x if state is None else replace(x, state=state)


def fold(x: Execution, events: tuple[object, ...]) -> Execution:
    for e in events:
        x = evolve(x, e)
    return x
