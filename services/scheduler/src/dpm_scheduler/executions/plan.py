"""How an execution starts (pure): seed catalog §3.2 and DESIGN.md §7.

Netboot kinds need the machine off (Wake-on-LAN, then the network boot) or "reboot at start"
(the agent reboots it into the network boot); on a powered-on machine without it they fail at
once (DPM-E141). Remote updates need the agent: a powered-off machine is woken first. Simulated
steps need nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dpm_schemas.events.executions import StartAction
from dpm_schemas.events.scenarios import NETBOOT_KINDS, ScenarioKind, ScenarioSpec


class Wait(StrEnum):
    BOOT = "waiting_boot"  # for MachineBooted (E112 when none within the power-on timeout)
    ONLINE = "waiting_online"  # for MachineCameOnline (E113)
    NOTHING = "running"


@dataclass(frozen=True)
class Start:
    action: StartAction
    wait: Wait
    netboot: bool  # pxe must serve the deploy environment (NetbootRequested)


@dataclass(frozen=True)
class Refuse:
    reason: str  # "needs-reboot"


def plan_start(spec: ScenarioSpec, *, online: bool) -> Start | Refuse:
    if spec.kind is ScenarioKind.SIMULATED:
        return Start(StartAction.RUN, Wait.NOTHING, netboot=False)
    if spec.kind in NETBOOT_KINDS:
        if not online:
            return Start(StartAction.WAKE, Wait.BOOT, netboot=True)
        if spec.reboot_at_start:
            return Start(StartAction.REBOOT, Wait.BOOT, netboot=True)
        return Refuse("needs-reboot")
    # remote update (and firmware-less agent kinds): the agent does the work
    if online:
        return Start(StartAction.RUN, Wait.NOTHING, netboot=False)
    return Start(StartAction.WAKE, Wait.ONLINE, netboot=False)
