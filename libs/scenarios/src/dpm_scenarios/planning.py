"""How an execution starts and when a multicast session starts (pure): seed catalog §3.2, §3.5 and
DESIGN.md §7. Shared by the scheduler, which acts on it, and the api, whose dry-run preview shows it.

Netboot kinds need the machine off (Wake-on-LAN, then the network boot) or "reboot at start"
(the agent reboots it into the network boot); on a powered-on machine without it they fail at
once (DPM-E141). Remote updates need the agent: a powered-off machine is woken first. Simulated
steps need nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpm_scenarios.states import ExecutionState
from dpm_schemas.events.executions import StartAction
from dpm_schemas.events.scenarios import NETBOOT_KINDS, ScenarioKind, ScenarioSpec

BOOT = ExecutionState.WAITING_BOOT  # for MachineBooted (E112 when none within the power-on timeout)
ONLINE = ExecutionState.WAITING_ONLINE  # for MachineCameOnline (E113)
NOTHING = ExecutionState.RUNNING  # the step is requested at once


@dataclass(frozen=True)
class Start:
    action: StartAction
    wait: ExecutionState  # the state the started execution waits in
    netboot: bool  # pxe must serve the deploy environment (NetbootRequested)


@dataclass(frozen=True)
class Refuse:
    reason: str  # "needs-reboot"


def plan_start(spec: ScenarioSpec, *, online: bool) -> Start | Refuse:
    if spec.kind is ScenarioKind.SIMULATED:
        return Start(StartAction.RUN, NOTHING, netboot=False)
    if spec.kind in NETBOOT_KINDS:
        if not online:
            return Start(StartAction.WAKE, BOOT, netboot=True)
        if spec.reboot_at_start:
            return Start(StartAction.REBOOT, BOOT, netboot=True)
        return Refuse("needs-reboot")
    # remote update (and firmware-less agent kinds): the agent does the work
    if online:
        return Start(StartAction.RUN, NOTHING, netboot=False)
    return Start(StartAction.WAKE, ONLINE, netboot=False)


@dataclass(frozen=True)
class SessionStart:
    take: int  # how many ready machines (oldest first) the session starts with
    reason: str


def session_start(
    *, ready: int, waited: float, max_targets: int | None, max_wait: float | None, start_now: bool, limit: int
) -> SessionStart | None:
    """When a multicast session starts (seed catalog §3.5): at max targets (capped by the concurrency
    limit, so cap 5 with max targets 10 runs in batches of 5), when the max wait expires (the ready
    ones only), on "start now", or at once when neither is set."""
    if ready == 0:
        return None
    target = min(max_targets, limit) if max_targets is not None else None
    if start_now:
        return SessionStart(min(ready, target or ready), "start-now")
    if target is not None and ready >= target:
        return SessionStart(target, "max-targets")
    if max_wait is not None and waited >= max_wait:
        return SessionStart(min(ready, target or ready), "max-wait")
    if target is None and max_wait is None:
        return SessionStart(ready, "immediately")
    return None
