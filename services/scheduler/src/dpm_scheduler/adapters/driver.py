"""The power-driver port. A driver acts on one machine; verifying the outcome (the machine came
online or network-booted within the remote power-on timeout) is the scheduler's job, not the driver's."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PowerTarget:
    machine_id: str
    macs: tuple[str, ...]
    wol_broadcast: IPv4Address | None  # the group's directed broadcast; None: the server's own segment


class PowerDriver(Protocol):
    name: str

    async def power_on(self, target: PowerTarget) -> None:
        """Ask the machine to start; returns once the request is sent."""
        ...
