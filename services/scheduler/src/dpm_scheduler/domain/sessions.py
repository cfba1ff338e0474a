"""Multicast sessions (pure): when the ready machines of a scenario start together (session_start
in dpm_scenarios) and what starting them decides for each member."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from dpm_scenarios import ExecutionState, session_start
from dpm_scheduler.domain.decide import Decision, step_started
from dpm_scheduler.domain.execution import Execution, Limits, fold
from dpm_schemas.events import MulticastSessionStarted, StepRequested


@dataclass(frozen=True)
class SessionDecision:
    started: MulticastSessionStarted
    members: tuple[Decision, ...]  # the rest of the ready machines wait for the next session


def decide_session(
    ready: list[Execution], *, start_now: bool, now: datetime, limits: Limits, session_id: uuid.UUID
) -> SessionDecision | None:
    """``ready``: one scenario's executions in READY. Oldest first; a session starts at max targets
    (capped by the concurrency limit), when the max wait expires, on "start now", or at once."""
    waiting = sorted((x for x in ready if x.state is ExecutionState.READY), key=lambda x: _age(x, now))
    if not waiting:
        return None
    spec = waiting[0].spec
    assert spec.multicast is not None
    since = min(x.ready_since or now for x in waiting)
    decision = session_start(
        ready=len(waiting),
        waited=(now - since).total_seconds(),
        max_targets=spec.multicast.max_targets,
        max_wait=spec.multicast.max_wait_seconds,
        start_now=start_now,
        limit=limits.concurrency,
    )
    if decision is None:
        return None
    members = waiting[: decision.take]
    started = MulticastSessionStarted(
        session_id=session_id,
        scenario_id=spec_scenario(members[0]),
        group=spec.multicast.group,
        machine_ids=tuple(x.machine_id for x in members),
        execution_ids=tuple(x.execution_id for x in members),
        reason=decision.reason,
    )
    return SessionDecision(started, tuple(_member(x, session_id, now, limits) for x in members))


def _member(x: Execution, session_id: uuid.UUID, now: datetime, limits: Limits) -> Decision:
    step = StepRequested(
        execution_id=x.execution_id, machine_id=x.machine_id, step=x.spec.kind.value, spec=x.spec, session_id=session_id
    )
    y = step_started(x, now, limits)  # the scenario timeout counts from the session's start
    return Decision((step,), replace(fold(y, (step,)), step_due=None))


def _age(x: Execution, now: datetime) -> tuple[datetime, str]:
    return (x.ready_since or now, str(x.execution_id))


def spec_scenario(x: Execution) -> uuid.UUID:
    assert x.scenario_id is not None  # multicast executions always belong to a saved scenario
    return x.scenario_id
