"""The scheduler's domain, table-driven and without PostgreSQL: every transition, watchdog, suspend
phase, session rule and effect outcome (DESIGN.md §7)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dpm_scenarios import ExecutionState as S
from dpm_scheduler.domain.decide import (
    decide_arrival,
    decide_effect_failed,
    decide_expired,
    decide_powered_off,
    decide_simulated_due,
    decide_start,
    decide_step_reported,
    decide_suspend,
    internal_failure,
    queue_refusal,
)
from dpm_scheduler.domain.effects import Reboot, Shutdown, Wake
from dpm_scheduler.domain.execution import Execution, Limits, evolve
from dpm_scheduler.domain.sessions import decide_session
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
    NetbootCleared,
    NetbootRequested,
    StepCancelRequested,
    StepReported,
    StepRequested,
)
from dpm_schemas.events.executions import StartAction, StepStatus
from dpm_schemas.events.scenarios import Multicast, ScenarioKind, ScenarioSpec

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(concurrency=5, power_on_timeout=600, no_response_timeout=1800, suspend_timeout=300)
MC = Multicast(group="239.1.1.1")


def ex(kind: str = "simulated", state: S = S.QUEUED, **kw: object) -> Execution:
    spec_fields = {k: kw.pop(k) for k in ("multicast", "power_off_at_end", "reboot_at_start", "params") if k in kw}
    return Execution(
        execution_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        machine_id=uuid.uuid4(),
        scenario_id=uuid.uuid4(),
        name="sc",
        spec=ScenarioSpec(kind=ScenarioKind(kind), **spec_fields),  # type: ignore[arg-type]
        state=state,
        **kw,  # type: ignore[arg-type]
    )


def kinds(events: tuple[object, ...]) -> list[type]:
    return [type(e) for e in events]


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# -- evolve ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "event", "state", "netboot"),
    [
        (
            "simulated",
            lambda x: ExecutionStarted(execution_id=x, machine_id=x, action=StartAction.RUN),
            S.RUNNING,
            False,
        ),
        (
            "backup",
            lambda x: ExecutionStarted(execution_id=x, machine_id=x, action=StartAction.WAKE),
            S.WAITING_BOOT,
            False,
        ),
        (
            "backup",
            lambda x: ExecutionStarted(execution_id=x, machine_id=x, action=StartAction.REBOOT),
            S.WAITING_BOOT,
            False,
        ),
        (
            "simulated",
            lambda x: ExecutionStarted(execution_id=x, machine_id=x, action=StartAction.WAKE),
            S.WAITING_ONLINE,
            False,
        ),
        ("backup", lambda x: NetbootRequested(machine_id=x, execution_id=x), S.QUEUED, True),
        ("backup", lambda x: ExecutionWaiting(execution_id=x, machine_id=x), S.READY, False),
        (
            "backup",
            lambda x: StepRequested(
                execution_id=x, machine_id=x, step="backup", spec=ScenarioSpec(kind=ScenarioKind.BACKUP)
            ),
            S.RUNNING,
            False,
        ),
        ("backup", lambda x: StepCancelRequested(execution_id=x, machine_id=x, step="backup"), S.SUSPENDING, False),
        (
            "backup",
            lambda x: ExecutionSuspended(execution_id=x, machine_id=x, confirmed=True, reason="r"),
            S.SUSPENDED,
            False,
        ),
        ("backup", lambda x: ExecutionCompleted(execution_id=x, machine_id=x), S.COMPLETED, False),
        (
            "backup",
            lambda x: ExecutionFailed(execution_id=x, machine_id=x, code="DPM-E145", reason="r"),
            S.FAILED,
            False,
        ),
        (
            "backup",
            lambda x: StepReported(execution_id=x, step="backup", status=StepStatus.PROGRESS),
            S.QUEUED,
            False,
        ),
    ],
)
def test_evolve_folds_each_event(kind, event, state, netboot) -> None:
    x = ex(kind)
    y = evolve(x, event(x.execution_id))
    assert (y.state, y.netboot) == (state, netboot)


def test_netboot_cleared_clears_it() -> None:
    x = ex("backup", netboot=True)
    assert not evolve(x, NetbootCleared(machine_id=x.machine_id, execution_id=x.execution_id, reason="r")).netboot


# -- start -------------------------------------------------------------------------------------

START = [
    # kind, spec extras, online, events, state, effects, deadline (s), step_due (s)
    ("simulated", {}, False, [ExecutionStarted, StepRequested], S.RUNNING, [], 1800, 1),
    ("simulated", {"params": (("seconds", "7"),)}, True, [ExecutionStarted, StepRequested], S.RUNNING, [], 1800, 7),
    ("simulated", {"params": (("seconds", "x"),)}, True, [ExecutionStarted, StepRequested], S.RUNNING, [], 1800, 1),
    ("backup", {}, False, [ExecutionStarted, NetbootRequested], S.WAITING_BOOT, [Wake], 600, None),
    (
        "backup",
        {"reboot_at_start": True},
        True,
        [ExecutionStarted, NetbootRequested],
        S.WAITING_BOOT,
        [Reboot],
        600,
        None,
    ),
    ("backup", {}, True, [ExecutionFailed], S.FAILED, [], None, None),  # DPM-E141
    ("restore", {"multicast": MC}, False, [ExecutionStarted, NetbootRequested], S.WAITING_BOOT, [Wake], 600, None),
    ("simulated", {"multicast": MC}, True, [ExecutionStarted, ExecutionWaiting], S.READY, [], None, None),
]


@pytest.mark.parametrize(("kind", "extra", "online", "events", "state", "effects", "deadline", "due"), START)
def test_start(kind, extra, online, events, state, effects, deadline, due) -> None:
    x = ex(kind, **extra)
    d = decide_start(x, online=online, now=NOW, limits=LIMITS, machine="m1")
    assert d is not None
    assert kinds(d.events) == events and d.execution.state is state
    assert [type(e) for e in d.effects] == effects
    assert all(e.execution_id == x.execution_id for e in d.effects)  # type: ignore[union-attr]
    assert d.execution.deadline == (later(deadline) if deadline else None)
    assert d.execution.step_due == (later(due) if due is not None else None)
    assert d.execution.netboot == (NetbootRequested in events)
    if state is S.FAILED:
        assert d.events[0].code == "DPM-E141"  # type: ignore[attr-defined]


def test_only_a_queued_execution_starts() -> None:
    assert decide_start(ex(state=S.RUNNING), online=True, now=NOW, limits=LIMITS, machine="m") is None


def test_step_timeout_is_the_shorter_of_the_limit_and_the_scenario() -> None:
    x = ex("simulated")
    x = replace(x, spec=x.spec.model_copy(update={"timeout_seconds": 60}))
    d = decide_start(x, online=True, now=NOW, limits=LIMITS, machine="m")
    assert d is not None and d.execution.deadline == later(60)


# -- arrival -----------------------------------------------------------------------------------

ARRIVAL = [
    # kind, state, via, multicast, events, next state
    ("backup", S.WAITING_BOOT, S.WAITING_BOOT, False, [StepRequested], S.RUNNING),
    ("restore", S.WAITING_BOOT, S.WAITING_BOOT, True, [ExecutionWaiting], S.READY),
    ("simulated", S.WAITING_ONLINE, S.WAITING_ONLINE, False, [StepRequested], S.RUNNING),
    ("backup", S.RUNNING, S.WAITING_BOOT, False, None, None),  # a boot while running changes nothing
    ("simulated", S.WAITING_BOOT, S.WAITING_ONLINE, False, None, None),  # the wrong arrival for the wait
]


@pytest.mark.parametrize(("kind", "state", "via", "mc", "events", "after"), ARRIVAL)
def test_arrival(kind, state, via, mc, events, after) -> None:
    x = ex(kind, state=state, **({"multicast": MC} if mc else {}))
    d = decide_arrival(x, via, NOW, LIMITS)
    if events is None:
        assert d is None
        return
    assert d is not None and kinds(d.events) == events and d.execution.state is after
    if after is S.READY:
        assert d.execution.ready_since == NOW and d.execution.deadline is None
    else:
        assert d.execution.deadline == later(1800)


# -- step reports ------------------------------------------------------------------------------

REPORTS = [
    # state, netboot, status, code, power off at end, events, next state, effects
    (S.RUNNING, False, StepStatus.PROGRESS, None, False, [], S.RUNNING, []),
    (S.RUNNING, False, StepStatus.COMPLETED, None, False, [ExecutionCompleted], S.COMPLETED, []),
    (S.RUNNING, True, StepStatus.COMPLETED, None, False, [NetbootCleared, ExecutionCompleted], S.COMPLETED, []),
    (S.RUNNING, True, StepStatus.COMPLETED, None, True, [NetbootCleared, ExecutionCompleted], S.COMPLETED, []),
    (S.RUNNING, False, StepStatus.COMPLETED, None, True, [], S.POWERING_OFF, [Shutdown]),
    (S.RUNNING, False, StepStatus.FAILED, "DPM-E150", False, [ExecutionFailed], S.FAILED, []),
    (S.RUNNING, False, StepStatus.FAILED, None, False, [ExecutionFailed], S.FAILED, []),
    (S.WAITING_BOOT, True, StepStatus.PROGRESS, None, False, [StepRequested], S.RUNNING, []),
    (
        S.WAITING_BOOT,
        True,
        StepStatus.COMPLETED,
        None,
        False,
        [StepRequested, NetbootCleared, ExecutionCompleted],
        S.COMPLETED,
        [],
    ),
    (S.COMPLETED, False, StepStatus.COMPLETED, None, False, None, None, None),  # late or duplicate
    (S.QUEUED, False, StepStatus.PROGRESS, None, False, None, None, None),
    (S.READY, False, StepStatus.PROGRESS, None, False, None, None, None),
]


@pytest.mark.parametrize(("state", "netboot", "status", "code", "off", "events", "after", "effects"), REPORTS)
def test_step_reported(state, netboot, status, code, off, events, after, effects) -> None:
    x = ex("backup", state=state, netboot=netboot, power_off_at_end=off, step_due=NOW)
    r = StepReported(execution_id=x.execution_id, step="backup", status=status, code=code)
    d = decide_step_reported(x, r, NOW, LIMITS)
    if events is None:
        assert d is None
        return
    assert d is not None and kinds(d.events) == events and d.execution.state is after
    assert [type(e) for e in d.effects] == effects
    if status is StepStatus.PROGRESS:
        assert d.execution.deadline == later(LIMITS.no_response_timeout) and d.execution.step_due is None
    if ExecutionFailed in events:
        assert d.events[-1].code == (code or "DPM-E145")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("failure", "power_off"), [(None, "sent"), (("DPM-E120", "offline"), "DPM-E120")])
def test_the_completion_after_power_off_records_the_agents_answer(failure, power_off) -> None:
    d = decide_powered_off(ex(state=S.POWERING_OFF), failure)
    assert d is not None and d.execution.state is S.COMPLETED
    assert d.events[0].power_off == power_off  # type: ignore[attr-defined]
    assert decide_powered_off(ex(state=S.COMPLETED), None) is None


# -- watchdogs ---------------------------------------------------------------------------------

WATCHDOGS = [
    # state, deadline offset (s), events, next state, code
    (S.WAITING_BOOT, -1, [NetbootCleared, ExecutionFailed], S.FAILED, "DPM-E112"),
    (S.WAITING_ONLINE, -1, [NetbootCleared, ExecutionFailed], S.FAILED, "DPM-E113"),
    (S.RUNNING, -1, [NetbootCleared, ExecutionFailed], S.FAILED, "DPM-E145"),
    (S.SUSPENDING, -1, [NetbootCleared, ExecutionSuspended], S.SUSPENDED, None),
    (S.RUNNING, 0, None, None, None),  # exactly at the deadline: not yet
    (S.RUNNING, 5, None, None, None),
    (S.QUEUED, -1, None, None, None),  # no watchdog before the start
    (S.COMPLETED, -1, None, None, None),
]


@pytest.mark.parametrize(("state", "offset", "events", "after", "code"), WATCHDOGS)
def test_watchdog(state, offset, events, after, code) -> None:
    # woken: the wake-up was sent (without it the wait fails DPM-E173, tests/unit/test_deadlines.py)
    x = ex("backup", state=state, netboot=True, deadline=later(offset), woken_at=later(-600))
    d = decide_expired(x, NOW, LIMITS, "m7")
    if events is None:
        assert d is None
        return
    assert d is not None and kinds(d.events) == events and d.execution.state is after
    assert d.execution.deadline is None
    last = d.events[-1]
    if code:
        assert last.code == code and "m7" in last.reason  # type: ignore[attr-defined]
    else:
        assert last.confirmed is False and "300 s" in last.reason  # type: ignore[attr-defined]


def test_a_shutdown_at_the_end_that_never_answers_completes_the_execution_with_e121() -> None:
    """The step's work is done: the execution completes at its deadline, never fails with E145."""
    x = ex("backup", state=S.POWERING_OFF, power_off_at_end=True, deadline=later(-1))
    d = decide_expired(x, NOW, LIMITS, "m7")
    assert d is not None and kinds(d.events) == [ExecutionCompleted] and d.execution.state is S.COMPLETED
    assert d.events[0].power_off == "DPM-E121"  # type: ignore[attr-defined]
    assert decide_expired(replace(x, deadline=later(5)), NOW, LIMITS, "m7") is None


def test_no_deadline_no_watchdog() -> None:
    assert decide_expired(ex(state=S.READY), NOW, LIMITS, "m") is None


@pytest.mark.parametrize(
    ("state", "due", "done"), [(S.RUNNING, -1, True), (S.RUNNING, 1, False), (S.SUSPENDING, -1, False)]
)
def test_simulated_step_completes_when_due(state, due, done) -> None:
    d = decide_simulated_due(ex(state=state, step_due=later(due)), NOW)
    assert (d is not None and d.execution.state is S.COMPLETED) if done else d is None


# -- suspend -----------------------------------------------------------------------------------

SUSPEND = [
    # kind, state, netboot, events, next state, deadline
    ("backup", S.QUEUED, False, [ExecutionSuspended], S.SUSPENDED, None),
    ("backup", S.WAITING_BOOT, True, [NetbootCleared, ExecutionSuspended], S.SUSPENDED, None),
    ("backup", S.READY, True, [NetbootCleared, ExecutionSuspended], S.SUSPENDED, None),
    ("backup", S.RUNNING, True, [StepCancelRequested], S.SUSPENDING, 300),
    ("simulated", S.RUNNING, False, [ExecutionSuspended], S.SUSPENDED, None),
    ("backup", S.SUSPENDING, True, None, None, None),
    ("backup", S.POWERING_OFF, False, None, None, None),
    ("backup", S.COMPLETED, False, None, None, None),
    ("backup", S.SUSPENDED, False, None, None, None),
]


@pytest.mark.parametrize(("kind", "state", "netboot", "events", "after", "deadline"), SUSPEND)
def test_suspend_phase_one(kind, state, netboot, events, after, deadline) -> None:
    d = decide_suspend(ex(kind, state=state, netboot=netboot), NOW, LIMITS)
    if events is None:
        assert d is None
        return
    assert d is not None and kinds(d.events) == events and d.execution.state is after
    assert d.execution.deadline == (later(deadline) if deadline else None)
    if after is S.SUSPENDED:
        assert d.events[-1].confirmed and f"while {state}" in d.events[-1].reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "ends"), [(StepStatus.PROGRESS, False), (StepStatus.FAILED, True), (StepStatus.COMPLETED, True)]
)
def test_suspend_phase_two_is_the_steps_last_report(status, ends) -> None:
    x = ex("backup", state=S.SUSPENDING, netboot=True)
    r = StepReported(execution_id=x.execution_id, step="backup", status=status)
    d = decide_step_reported(x, r, NOW, LIMITS)
    if not ends:
        assert d is None
        return
    assert d is not None and kinds(d.events) == [NetbootCleared, ExecutionSuspended]
    assert d.events[-1].confirmed and d.events[-1].reason == "the step stopped"  # type: ignore[attr-defined]


# -- queueing, internal failures, effect outcomes ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "multicast", "index", "code"),
    [
        ("simulated", None, 0, None),
        ("os-install", None, 0, "DPM-E115"),
        ("firmware", None, 3, "DPM-E115"),
        ("remote-update", Multicast(group="239.1.1.1", max_targets=1), 5, "DPM-E146"),
        ("restore", Multicast(group="239.1.1.1", max_targets=1), 5, None),  # restores queue the rest
    ],
)
def test_queue_refusal(kind, multicast, index, code) -> None:
    spec = ScenarioSpec(kind=ScenarioKind(kind), multicast=multicast)
    got = queue_refusal(spec, index, scenario="s", machine="m")
    assert (got[0] if got else None) == code


def test_an_internal_failure_fails_the_execution_alone_with_e116() -> None:
    d = internal_failure(ex(state=S.RUNNING, netboot=True), ValueError("boom"))
    assert kinds(d.events) == [NetbootCleared, ExecutionFailed] and d.events[-1].code == "DPM-E116"  # type: ignore[attr-defined]
    assert "ValueError: boom" in d.events[-1].reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("state", "fails"),
    [(S.WAITING_BOOT, True), (S.WAITING_ONLINE, True), (S.RUNNING, False), (S.FAILED, False), (S.COMPLETED, False)],
)
def test_a_wake_or_reboot_that_could_not_be_sent_fails_a_still_waiting_execution(state, fails) -> None:
    d = decide_effect_failed(ex(state=state), ("DPM-E120", "agent offline"))
    assert (d is not None and d.execution.state is S.FAILED and d.events[-1].code == "DPM-E120") if fails else d is None  # type: ignore[attr-defined]


# -- multicast sessions --------------------------------------------------------------------------

SESSIONS = [
    # ready, waited (s), max targets, max wait, start now, concurrency, members, reason
    (0, 0, None, None, False, 5, None, None),
    (3, 0, None, None, False, 5, 3, "immediately"),
    (2, 0, 3, None, False, 5, None, None),  # gathering
    (3, 0, 3, None, False, 5, 3, "max-targets"),
    (7, 0, 10, None, False, 5, 5, "max-targets"),  # capped by the concurrency limit
    (2, 59, None, 60, False, 5, None, None),
    (2, 60, None, 60, False, 5, 2, "max-wait"),
    (2, 0, 10, 60, True, 5, 2, "start-now"),
]


@pytest.mark.parametrize(("ready", "waited", "cap", "wait", "now_", "limit", "members", "reason"), SESSIONS)
def test_session(ready, waited, cap, wait, now_, limit, members, reason) -> None:
    mc = Multicast(group="239.1.1.1", max_targets=cap, max_wait_seconds=wait)
    scenario = uuid.uuid4()
    xs = [
        replace(ex("restore", state=S.READY, multicast=mc, ready_since=later(-waited + i)), scenario_id=scenario)
        for i in range(ready)
    ]
    xs.append(replace(ex("restore", state=S.RUNNING, multicast=mc), scenario_id=scenario))  # not ready: never taken
    sid = uuid.uuid4()
    d = decide_session(xs, start_now=now_, now=NOW, limits=replace(LIMITS, concurrency=limit), session_id=sid)
    if members is None:
        assert d is None
        return
    assert d is not None and d.started.reason == reason and len(d.members) == members
    assert list(d.started.execution_ids) == [x.execution_id for x in xs[:members]]  # oldest first
    for m in d.members:
        assert kinds(m.events) == [StepRequested] and m.execution.state is S.RUNNING
        assert m.events[0].session_id == sid and m.execution.deadline == later(1800)  # type: ignore[attr-defined]
