"""Issue 21, item 2: every deadline of an execution, table-driven and without PostgreSQL.

- The scenario timeout counts from the step's start and keeps applying after progress reports: a
  report sets the deadline to min(report + no-response timeout, step start + scenario timeout).
- An interrupt of a running step is bounded by the suspend timeout, and never outlives the scenario
  timeout either; a progress report while suspending extends nothing.
- The power-on timeout counts from the wake-up actually sent (the outbox drain, perhaps only after a
  restart); a wait whose wake-up was never sent fails DPM-E173, not DPM-E112 (which blames the boot order).
- Each watchdog that fires leaves ACTIVE, so its concurrency slot is free.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dpm_scenarios import ACTIVE
from dpm_scenarios import ExecutionState as S
from dpm_scheduler.domain.decide import (
    decide_arrival,
    decide_expired,
    decide_start,
    decide_step_reported,
    decide_suspend,
    decide_woken,
)
from dpm_scheduler.domain.execution import Execution, Limits
from dpm_scheduler.domain.sessions import decide_session
from dpm_schemas.events import ExecutionFailed, ExecutionSuspended, StepReported
from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.scenarios import Multicast, ScenarioKind, ScenarioSpec

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(concurrency=5, power_on_timeout=600, no_response_timeout=1800, suspend_timeout=600)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ex(state: S, *, timeout: int = 30, kind: str = "disk-check", **kw: object) -> Execution:
    spec = ScenarioSpec(kind=ScenarioKind(kind), timeout_seconds=timeout)
    return Execution(
        execution_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        machine_id=uuid.uuid4(),
        scenario_id=uuid.uuid4(),
        name="check",
        spec=spec,
        state=state,
        netboot=True,
        **kw,  # type: ignore[arg-type]
    )


def progress(x: Execution) -> StepReported:
    return StepReported(execution_id=x.execution_id, step="disk-check", status=StepStatus.PROGRESS, percent=10)


# -- the scenario timeout after progress reports ---------------------------------------------------

REPORTS = [
    # scenario timeout, no-response timeout, report times (s after the step's start), deadline (s)
    (30, 1800, [5], 30),  # the case: 5 + 1800 > 30, so the scenario's 30 s stands
    (30, 1800, [5, 20, 29], 30),  # every report: still 30
    (3600, 1800, [5], 1805),  # the no-response timeout is the nearer one
    (3600, 1800, [5, 1000], 2800),
    (3600, 1800, [2000], 3600),  # capped once the report is late in the scenario
    (30, 10, [5], 15),
    (30, 10, [5, 25], 30),  # 25 + 10 = 35 > 30
]


@pytest.mark.parametrize(("timeout", "no_response", "reports", "deadline"), REPORTS)
def test_a_progress_report_never_moves_the_deadline_past_the_scenario_timeout(
    timeout, no_response, reports, deadline
) -> None:
    limits = Limits(no_response_timeout=no_response)
    x = ex(S.RUNNING, timeout=timeout, step_at=T0, deadline=at(min(timeout, no_response)))
    for t in reports:
        d = decide_step_reported(x, progress(x), at(t), limits)
        assert d is not None and d.events == () and d.execution.state is S.RUNNING
        x = d.execution
    assert x.deadline == at(deadline) and x.step_at == T0


def test_the_step_start_sets_both_the_anchor_and_the_nearer_deadline() -> None:
    booted = decide_arrival(ex(S.WAITING_BOOT, timeout=30, woken_at=at(-10)), S.WAITING_BOOT, T0, LIMITS)
    assert booted is not None and booted.execution.step_at == T0 and booted.execution.deadline == at(30)
    # a report that proves the boot starts the step at the report's (log) time
    x = ex(S.WAITING_BOOT, timeout=30)
    d = decide_step_reported(x, progress(x), at(4), LIMITS)
    assert d is not None and d.execution.step_at == at(4) and d.execution.deadline == at(34)
    sim = ex(S.QUEUED, timeout=40, kind="simulated")
    started = decide_start(sim, online=True, now=T0, limits=LIMITS, machine="m")
    assert started is not None and started.execution.step_at == T0 and started.execution.deadline == at(40)


def test_a_multicast_session_starts_the_scenario_timeout() -> None:
    spec = ScenarioSpec(kind=ScenarioKind.RESTORE, timeout_seconds=60, multicast=Multicast(group="239.1.1.1"))
    ready = [replace(ex(S.READY, ready_since=at(-5)), spec=spec)]
    d = decide_session(ready, start_now=True, now=T0, limits=LIMITS, session_id=uuid.uuid4())
    assert d is not None
    member = d.members[0].execution
    assert member.state is S.RUNNING and member.step_at == T0 and member.deadline == at(60)


EXPIRED = [
    # state, scenario timeout, step start (s), deadline (s), woken at (s), code | None for suspended
    (S.RUNNING, 30, 0, 30, None, "DPM-E172"),  # the scenario timeout fired
    (S.RUNNING, 3600, 0, 1805, None, "DPM-E145"),  # the no-response timeout fired
    (S.WAITING_BOOT, 3600, None, 600, 0, "DPM-E112"),  # woken, no network boot
    (S.WAITING_BOOT, 3600, None, 600, None, "DPM-E173"),  # never woken: not the boot order
    (S.WAITING_ONLINE, 3600, None, 600, 0, "DPM-E113"),
    (S.WAITING_ONLINE, 3600, None, 600, None, "DPM-E173"),
    (S.SUSPENDING, 3600, 0, 700, None, None),  # the suspend timeout fired
    (S.SUSPENDING, 30, 0, 30, None, None),  # the scenario timeout bounds an interrupt too
]


@pytest.mark.parametrize(("state", "timeout", "step", "deadline", "woken", "code"), EXPIRED)
def test_each_deadline_fails_with_its_own_code_and_frees_the_slot(state, timeout, step, deadline, woken, code) -> None:
    x = ex(
        state,
        timeout=timeout,
        step_at=None if step is None else at(step),
        deadline=at(deadline),
        woken_at=None if woken is None else at(woken),
    )
    assert decide_expired(x, at(deadline), LIMITS, "m7") is None  # exactly at the deadline: not yet
    d = decide_expired(x, at(deadline + 0.001), LIMITS, "m7")
    assert d is not None and d.execution.state not in ACTIVE and d.execution.deadline is None
    last = d.events[-1]
    if code is None:
        assert isinstance(last, ExecutionSuspended) and not last.confirmed
        assert ("scenario timeout" in last.reason) == (timeout == 30)
    else:
        assert isinstance(last, ExecutionFailed) and last.code == code and "m7" in last.reason
    if code == "DPM-E172":
        assert "30 s" in last.reason and "progress reports do not extend it" in last.reason
    if code == "DPM-E173":
        assert "boot order is not the cause" in last.reason
    if code == "DPM-E112":
        assert at(woken).isoformat(timespec="seconds") in last.reason


# -- interrupts ----------------------------------------------------------------------------------

SUSPENDS = [
    # scenario timeout, step start (s), suspend requested (s), deadline (s)
    (3600, 0, 100, 700),  # the suspend timeout
    (300, 0, 100, 300),  # the scenario timeout ends first
    (3600, None, 100, 700),  # no anchor known (a row from before issue 21): the suspend timeout
]


@pytest.mark.parametrize(("timeout", "step", "requested", "deadline"), SUSPENDS)
def test_an_interrupt_is_bounded_by_the_suspend_timeout_and_the_scenario(timeout, step, requested, deadline) -> None:
    x = ex(S.RUNNING, timeout=timeout, step_at=None if step is None else at(step), deadline=at(10))
    d = decide_suspend(x, at(requested), LIMITS)
    assert d is not None and d.execution.state is S.SUSPENDING and d.execution.state in ACTIVE  # holds its slot
    assert d.execution.deadline == at(deadline)
    y = d.execution
    assert decide_step_reported(y, progress(y), at(requested + 1), LIMITS) is None  # no extension while suspending


# -- the wake-up as performed ------------------------------------------------------------------------

WOKEN = [
    # state, already woken, performed at (s), deadline after (s) | None when nothing changes
    (S.WAITING_BOOT, False, 5, 605),  # the power-on timeout counts from the packet
    (S.WAITING_ONLINE, False, 40, 640),  # e.g. sent only after a restart
    (S.WAITING_BOOT, True, 5, None),  # a repeat (at least once) moves nothing
    (S.RUNNING, False, 5, None),  # it booted before the drain got to it
    (S.FAILED, False, 5, None),
]


@pytest.mark.parametrize(("state", "already", "performed", "deadline"), WOKEN)
def test_the_power_on_timeout_counts_from_the_wake_up_sent(state, already, performed, deadline) -> None:
    x = ex(state, deadline=at(600), woken_at=at(1) if already else None)
    d = decide_woken(x, at(performed), LIMITS)
    if deadline is None:
        assert d is None
        return
    assert d is not None and d.events == () and d.effects == ()
    assert d.execution.woken_at == at(performed) and d.execution.deadline == at(deadline)
