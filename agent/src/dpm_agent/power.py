"""Power drivers on the machine: the real one asks systemd (or shutdown(8)); the simulated one, for
labs and tests, records the request and makes the agent behave as if the machine went down.

The driver is chosen at composition (``driver_for``, called by ``__main__``) and handed to the
``Agent``, which knows nothing of the kinds: what "the machine went down" means for the session is
the driver's to say, by stopping the agent or raising ``EndSession``."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Protocol

from dpm_agent.config import AgentConfig
from dpm_schemas.agent_protocol import Action


class EndSession(Exception):
    """Raised inside a session (by a power driver, or by the agent when told to stop) to end it on
    purpose: the session's task group cancels the receiver, the talker and the commands, and the
    agent connects again (unless it was stopped). A simulated reboot is one."""


class MachinePower(Protocol):
    async def act(self, action: Action) -> None: ...


class SystemdPower:
    """``systemctl poweroff|reboot``; ``shutdown -h|-r now`` where systemd is absent."""

    async def act(self, action: Action) -> None:
        if shutil.which("systemctl"):
            argv = ["systemctl", "poweroff" if action is Action.SHUTDOWN else "reboot"]
        else:
            argv = ["shutdown", "-h" if action is Action.SHUTDOWN else "-r", "now"]
        proc = await asyncio.create_subprocess_exec(*argv)
        await proc.wait()


class SimulatedPower:
    """Appends the request to ``power.log`` in the state directory; shutdown stops the agent (the
    machine is off), reboot ends the session (the machine restarts: the agent connects again after
    its backoff). With ``lab`` a reboot stops the agent too: the lab machine around it then boots
    again -- through the network, if dpm is waiting for that."""

    def __init__(self, state_dir: Path, stop: asyncio.Event, lab: bool = False) -> None:
        self.log = state_dir / "power.log"
        self.stop = stop
        self.lab = lab

    async def act(self, action: Action) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as f:
            f.write(f"{time.time():.3f} {action.value}\n")
        if action is Action.SHUTDOWN or self.lab:
            self.stop.set()
        else:
            raise EndSession("simulated reboot")


def driver_for(config: AgentConfig, stop: asyncio.Event) -> MachinePower:
    """The driver ``power_driver`` names; ``stop`` is the agent's, for drivers that switch it off."""
    if config.power_driver in ("simulated", "lab"):
        return SimulatedPower(config.state_dir, stop, lab=config.power_driver == "lab")
    return SystemdPower()


def last_power_action(state_dir: Path) -> str | None:
    """What a simulated machine was last told ("shutdown" / "reboot"), from its power.log."""
    try:
        lines = (state_dir / "power.log").read_text().split()
    except FileNotFoundError:
        return None
    return lines[-1] if lines else None
