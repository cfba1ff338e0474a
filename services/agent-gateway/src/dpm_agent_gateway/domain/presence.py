"""Which presence changes reach the log (pure): only transitions. A machine that says hello or is
heard from while its row shows it offline comes online; one that says hello while online (its agent
restarted within the timeout, after upgrading itself) with another agent version than its row holds
changed its agent version; addresses and inventory are appended only
when they differ from what the row holds; a machine silent for the timeout goes offline. Each change
is the event for the agent stream and the presence columns it sets, written in one transaction
under the row's lock (``presence.Presence``), so no transition is reported twice."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from dpm_schemas.agent_protocol import Inventory
from dpm_schemas.base import Event
from dpm_schemas.events import (
    AgentVersionChanged,
    InventoryReported,
    MachineAddressesChanged,
    MachineCameOnline,
    MachineWentOffline,
)


@dataclass(frozen=True)
class Change:
    event: Event
    columns: Mapping[str, object]  # of the machine's presence row


def came_online(machine_id: uuid.UUID, *, online: bool, agent_version: str) -> Change | None:
    if online:
        return None
    event = MachineCameOnline(machine_id=machine_id, agent_version=agent_version)
    return Change(event, {"online": True, "agent_version": agent_version})


def said_hello(machine_id: uuid.UUID, *, online: bool, agent_version: str, known_version: str) -> Change | None:
    """A hello: online if it was not, else its agent's new version if that changed."""
    if not online:
        return came_online(machine_id, online=online, agent_version=agent_version)
    if agent_version == known_version:
        return None
    event = AgentVersionChanged(machine_id=machine_id, agent_version=agent_version, previous=known_version)
    return Change(event, {"agent_version": agent_version})


def addresses(machine_id: uuid.UUID, ips: tuple[str, ...], known: list[str]) -> Change | None:
    if sorted(ips) == sorted(known):
        return None
    return Change(MachineAddressesChanged(machine_id=machine_id, ips=ips), {"ips": list(ips)})


def inventory(machine_id: uuid.UUID, inv: Inventory, digest: str) -> Change | None:
    """A new inventory, when its digest differs from the last one appended."""
    if digest == inv.digest:
        return None
    event = InventoryReported(
        machine_id=machine_id, os=inv.os, kernel=inv.kernel, packages=tuple(sorted(inv.packages)), digest=inv.digest
    )
    return Change(event, {"inventory_digest": inv.digest})


def offline_reason(timeout: float) -> str:
    return f"no heartbeat for {timeout:g} s"


def went_offline(machine_id: uuid.UUID, timeout: float) -> Change:
    return Change(MachineWentOffline(machine_id=machine_id, reason=offline_reason(timeout)), {"online": False})
