"""Decisions: ``decide_*(execution, message, now, limits) -> Decision`` (pure).

Each returns the events to append, the execution's next state (events folded by ``evolve``, timers
set from ``now``) and the effects to run after the commit; None when the message changes nothing
(a late or duplicate report, an execution already over).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from dpm_scenarios import ACTIVE, OPEN, ExecutionState, Refuse, plan_start
from dpm_scheduler.domain.effects import Effect, Reboot, Shutdown, Wake
from dpm_scheduler.domain.execution import Execution, Limits, fold
from dpm_schemas import E
from dpm_schemas.events import (
    DeployBootUnavailable,
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
from dpm_schemas.events.scenarios import UNAVAILABLE_KINDS, ScenarioKind, ScenarioSpec

S = ExecutionState
Failure = tuple[str, str]  # (error code, message)


@dataclass(frozen=True)
class Decision:
    events: tuple[object, ...]
    execution: Execution
    effects: tuple[Effect, ...] = ()

    def then(self, other: Decision) -> Decision:
        return Decision(self.events + other.events, other.execution, self.effects + other.effects)


def _decide(x: Execution, events: tuple[object, ...], effects: tuple[Effect, ...] = (), **timers: object) -> Decision:
    """Fold ``events`` into ``x``; every timer not named is cleared (a new state has its own watchdog)."""
    clear: dict[str, object] = {"deadline": None, "step_due": None}
    return Decision(events, replace(fold(x, events), **{**clear, **timers}), effects)  # type: ignore[arg-type]


def step_timeout(spec: ScenarioSpec, limits: Limits) -> float:
    return float(min(limits.no_response_timeout, spec.timeout_seconds))


def step_started(x: Execution, now: datetime, limits: Limits) -> Execution:
    """``x`` as its step starts at ``now``: the scenario timeout counts from here, and the first
    report is due within the no-response timeout -- whichever ends first."""
    y = replace(x, step_at=now)
    return replace(y, deadline=y.capped(now + timedelta(seconds=limits.no_response_timeout)))


def simulated_seconds(spec: ScenarioSpec) -> float | None:
    if spec.kind is not ScenarioKind.SIMULATED:
        return None
    try:
        return max(0.0, float(spec.param("seconds", "1")))
    except ValueError:
        return 1.0


def finish(x: Execution, failure: Failure | None) -> Decision:
    """End the execution. "Power off at end" first asks the agent (an effect); the completion is
    recorded with the agent's answer (``decide_powered_off``)."""
    if failure is None and x.spec.power_off_at_end and not x.netboot:
        return _decide(replace(x, state=S.POWERING_OFF), (), (Shutdown(x.machine_id, x.execution_id),))
    events: list[object] = []
    if x.netboot:
        events.append(NetbootCleared(machine_id=x.machine_id, execution_id=x.execution_id, reason="execution ended"))
    if failure is None:
        events.append(ExecutionCompleted(execution_id=x.execution_id, machine_id=x.machine_id))
    else:
        code, message = failure
        events.append(
            ExecutionFailed(execution_id=x.execution_id, machine_id=x.machine_id, code=code, reason=message[:500])
        )
    return _decide(x, tuple(events))


def decide_powered_off(x: Execution, failure: Failure | None) -> Decision | None:
    """The agent's answer to the shutdown at the end: the completion records it ('sent' or a code)."""
    if x.state is not S.POWERING_OFF:
        return None
    power_off = "sent" if failure is None else failure[0]
    done = ExecutionCompleted(execution_id=x.execution_id, machine_id=x.machine_id, power_off=power_off)
    return _decide(x, (done,))


def suspend(x: Execution, *, confirmed: bool, reason: str) -> Decision:
    events: list[object] = []
    if x.netboot:
        events.append(NetbootCleared(machine_id=x.machine_id, execution_id=x.execution_id, reason="suspended"))
    events.append(
        ExecutionSuspended(execution_id=x.execution_id, machine_id=x.machine_id, confirmed=confirmed, reason=reason)
    )
    return _decide(x, tuple(events))


def internal_failure(x: Execution, exc: BaseException) -> Decision:
    """Whatever went wrong inside the scheduler fails this execution alone (DPM-E116)."""
    err = E.EXECUTION_INTERNAL(execution_id=x.execution_id, reason=f"{type(exc).__name__}: {exc}"[:300])
    return finish(x, (err.code, err.message))


def queue_refusal(spec: ScenarioSpec, index: int, *, scenario: str, machine: str) -> Failure | None:
    """Fail at once what can never run: a kind dpm cannot run (DPM-E115, saved before it was
    refused), or a machine beyond a multicast remote update's max targets (seed catalog SE-05(b))."""
    if spec.kind in UNAVAILABLE_KINDS:
        err = E.KIND_NOT_AVAILABLE(kind=spec.kind.value, reason="refused at run, nothing was started")
        return err.code, err.message
    cap = spec.multicast.max_targets if spec.multicast is not None else None
    if spec.kind is ScenarioKind.REMOTE_UPDATE and cap is not None and index >= cap:
        over = E.MULTICAST_TARGETS_EXCEEDED(scenario=scenario, max_targets=cap, machine=machine)
        return over.code, over.message
    return None


def arrived(x: Execution, now: datetime, limits: Limits) -> Decision:
    """The machine is where its step needs it: request the step, or wait for the multicast session."""
    if x.spec.multicast is not None:
        waiting = ExecutionWaiting(execution_id=x.execution_id, machine_id=x.machine_id)
        return _decide(x, (waiting,), ready_since=now, step_due=x.step_due)
    step = StepRequested(execution_id=x.execution_id, machine_id=x.machine_id, step=x.spec.kind.value, spec=x.spec)
    y = step_started(x, now, limits)
    return _decide(y, (step,), deadline=y.deadline)


def decide_arrival(x: Execution, via: ExecutionState, now: datetime, limits: Limits) -> Decision | None:
    """MachineBooted (``via`` WAITING_BOOT) or MachineCameOnline (WAITING_ONLINE)."""
    return arrived(x, now, limits) if x.state is via else None


def decide_step_reported(x: Execution, r: StepReported, now: datetime, limits: Limits) -> Decision | None:
    if x.state not in (S.WAITING_BOOT, S.RUNNING, S.SUSPENDING):
        return None  # late or duplicate report: the execution already ended
    if x.state is S.SUSPENDING:  # phase two of an interrupt: the step stopped
        return None if r.status is StepStatus.PROGRESS else suspend(x, confirmed=True, reason="the step stopped")
    first = arrived(x, now, limits) if x.state is S.WAITING_BOOT else Decision((), x)  # a report proves the boot
    y = first.execution
    if r.status is StepStatus.PROGRESS:  # the next report is due, but never after the scenario timeout
        deadline = y.capped(now + timedelta(seconds=limits.no_response_timeout))
        return first.then(Decision((), replace(y, state=S.RUNNING, deadline=deadline, step_due=None)))
    if r.status is StepStatus.COMPLETED:
        return first.then(finish(y, None))
    return first.then(finish(y, (r.code or E.NO_RESPONSE.code, r.message)))


def decide_deploy_unavailable(x: Execution, e: DeployBootUnavailable) -> Decision | None:
    """pxe found the deploy environment missing when this execution's machine asked for it: the step can
    never start, so fail now with pxe's code (DPM-E430) rather than at the no-response timeout -- unless
    the execution no longer network-boots (already over, interrupted, or its step already reported)."""
    if not x.netboot or x.state not in (S.WAITING_BOOT, S.READY, S.RUNNING):
        return None
    return finish(x, (e.code, e.reason))


def decide_suspend(x: Execution, now: datetime, limits: Limits) -> Decision | None:
    """Interrupt, phase one: what has not reached its step stops at once; a running step is asked to
    stop and has the suspend timeout to confirm (phase two: its final report, or the watchdog)."""
    if x.state not in OPEN or x.state in (S.SUSPENDING, S.POWERING_OFF):
        return None  # already over, being interrupted, or its step already completed
    if x.state is not S.RUNNING or x.spec.kind is ScenarioKind.SIMULATED:
        return suspend(x, confirmed=True, reason=f"interrupted while {x.state}")
    cancel = StepCancelRequested(execution_id=x.execution_id, machine_id=x.machine_id, step=x.spec.kind.value)
    return _decide(x, (cancel,), deadline=x.capped(now + timedelta(seconds=limits.suspend_timeout)))


def decide_expired(x: Execution, now: datetime, limits: Limits, machine: str) -> Decision | None:
    """The watchdogs: no network boot (DPM-E112), no agent (DPM-E113), a wake-up never sent
    (DPM-E173), no step report (DPM-E145), the scenario timeout (DPM-E172), no confirmation of an
    interrupt (suspended, unconfirmed), no answer to the shutdown at the end (completed, with the
    power-off recorded as DPM-E121: the step's work was done). Each frees the slot: the execution leaves ACTIVE."""
    if x.state not in ACTIVE or x.deadline is None or x.deadline >= now:
        return None
    if x.state is S.SUSPENDING:
        return suspend(x, confirmed=False, reason=_unconfirmed(x, limits, machine))
    if x.state is S.POWERING_OFF:  # the step completed; only the shutdown's answer never came
        late = E.AGENT_TIMEOUT(machine_id=x.machine_id, action="shutdown", timeout="the step's deadline")
        return decide_powered_off(x, (late.code, late.message))
    return finish(x, _watchdog_failure(x, limits, machine))


def _unconfirmed(x: Execution, limits: Limits, machine: str) -> str:
    cap = x.scenario_deadline
    within = (
        f"before the scenario timeout of {x.spec.timeout_seconds} s"
        if cap is not None and x.deadline is not None and x.deadline >= cap
        else f"within {round(limits.suspend_timeout)} s"
    )
    return f"{machine} did not confirm the interrupt {within}; force clear it once it is safe"


def _watchdog_failure(x: Execution, limits: Limits, machine: str) -> Failure:
    """Which deadline fired, as (code, message): the wait's own, or the scenario's."""
    power_on = round(limits.power_on_timeout)
    if x.state in (S.WAITING_BOOT, S.WAITING_ONLINE) and x.woken_at is None:
        err = E.WAKE_NOT_SENT(machine=machine, timeout=power_on)  # not the machine's fault: say so
    elif x.state is S.WAITING_BOOT:
        sent = x.woken_at.isoformat(timespec="seconds") if x.woken_at else "?"
        err = E.NETBOOT_NOT_DETECTED(machine=machine, timeout=power_on, sent=sent)
    elif x.state is S.WAITING_ONLINE:
        err = E.POWER_ON_FAILED(machine=machine, timeout=power_on)
    elif x.scenario_deadline is not None and x.deadline is not None and x.deadline >= x.scenario_deadline:
        step = x.spec.kind.value
        err = E.SCENARIO_TIMEOUT(scenario=x.name, machine=machine, timeout=x.spec.timeout_seconds, step=step)
    else:
        timeout = limits.no_response_timeout if x.step_at else min(limits.no_response_timeout, x.spec.timeout_seconds)
        err = E.NO_RESPONSE(machine=machine, timeout=round(timeout), phase=f"step {x.spec.kind.value}")
    return err.code, err.message


def decide_woken(x: Execution, at: datetime, limits: Limits) -> Decision | None:
    """The start's wake-up or reboot was performed at ``at`` (the outbox drain, after the commit,
    perhaps only after a restart): the power-on timeout counts from then, and a watchdog that fires
    later knows the machine was woken (DPM-E112, not DPM-E173)."""
    if x.state not in (S.WAITING_BOOT, S.WAITING_ONLINE) or x.woken_at is not None:
        return None
    deadline = at + timedelta(seconds=limits.power_on_timeout)
    return Decision((), replace(x, woken_at=at, deadline=deadline))


def decide_simulated_due(x: Execution, now: datetime) -> Decision | None:
    if x.state is not S.RUNNING or x.step_due is None or x.step_due >= now:
        return None
    return finish(x, None)


def decide_start(x: Execution, *, online: bool, now: datetime, limits: Limits, machine: str) -> Decision | None:
    """Start a queued execution: how (plan_start), what it waits for, and the wake or reboot after commit."""
    if x.state is not S.QUEUED:
        return None
    plan = plan_start(x.spec, online=online)
    if isinstance(plan, Refuse):
        err = E.NETBOOT_NEEDS_REBOOT(machine=machine, scenario=x.name, kind=x.spec.kind.value)
        return finish(x, (err.code, err.message))
    events: list[object] = [ExecutionStarted(execution_id=x.execution_id, machine_id=x.machine_id, action=plan.action)]
    if plan.netboot:  # committed before the machine is woken: pxe must know what to serve it
        events.append(NetbootRequested(machine_id=x.machine_id, execution_id=x.execution_id))
    effects: tuple[Effect, ...] = ()
    if plan.action is StartAction.WAKE:
        effects = (Wake(x.machine_id, x.execution_id),)
    elif plan.action is StartAction.REBOOT:
        effects = (Reboot(x.machine_id, x.execution_id),)
    if plan.wait is S.RUNNING:
        started = _decide(x, tuple(events))
        return (
            started.then(arrived(started.execution, now, limits))
            if x.spec.multicast
            else _run_at_once(started, now, limits)
        )
    return _decide(x, tuple(events), effects, deadline=x.after(now, limits.power_on_timeout))


def _run_at_once(started: Decision, now: datetime, limits: Limits) -> Decision:
    x = step_started(started.execution, now, limits)
    step = StepRequested(execution_id=x.execution_id, machine_id=x.machine_id, step=x.spec.kind.value, spec=x.spec)
    due = x.after(now, simulated_seconds(x.spec))
    return started.then(_decide(x, (step,), deadline=x.deadline, step_due=due))


def decide_effect_failed(x: Execution, failure: Failure) -> Decision | None:
    """The wake or reboot could not even be sent: the execution fails, unless it moved on meanwhile."""
    if x.state not in (S.WAITING_BOOT, S.WAITING_ONLINE):
        return None
    return finish(x, failure)
