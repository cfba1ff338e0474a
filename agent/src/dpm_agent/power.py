"""Power drivers on the machine: the real one asks systemd (or shutdown(8)); the simulated one, for
labs and tests, records the request and makes the agent behave as if the machine went down."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Protocol

from dpm_schemas.agent_protocol import Action


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
    machine is off), reboot drops the connection for ``reboot_pause`` seconds (the machine restarts).
    With ``lab`` a reboot stops the agent too: the lab machine around it then boots again -- through
    the network, if dpm is waiting for that."""

    def __init__(self, state_dir: Path, stop: asyncio.Event, reboot_pause: float = 1.0, lab: bool = False) -> None:
        self.log = state_dir / "power.log"
        self.stop = stop
        self.reboot_pause = reboot_pause
        self.lab = lab
        self.rebooting = asyncio.Event()

    async def act(self, action: Action) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as f:
            f.write(f"{time.time():.3f} {action.value}\n")
        if action is Action.SHUTDOWN or self.lab:
            self.stop.set()
        else:
            self.rebooting.set()


def last_power_action(state_dir: Path) -> str | None:
    """What a simulated machine was last told ("shutdown" / "reboot"), from its power.log."""
    try:
        lines = (state_dir / "power.log").read_text().split()
    except FileNotFoundError:
        return None
    return lines[-1] if lines else None
