"""Scenario and assignment streams (written by api): what operators run on machines, and their
requests to run it. A run carries the scenario revision it was requested with (its spec copied in),
so editing or deleting the scenario never changes a run in flight."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from dpm_schemas.base import Event
from dpm_schemas.events.machines import IPv4
from dpm_schemas.text import LONG_TEXT_MAX, NAME_MAX, Label, Name, Text


class ScenarioKind(StrEnum):
    BACKUP = "backup"
    RESTORE = "restore"
    DISK_CHECK = "disk-check"
    OS_INSTALL = "os-install"
    REMOTE_UPDATE = "remote-update"
    FIRMWARE = "firmware"
    SIMULATED = "simulated"  # a step the scheduler completes itself after ``params.seconds`` (tests, lab, demos)


# Kinds that boot the deploy environment (the machine must be off, or rebooted at start).
NETBOOT_KINDS = frozenset(
    {ScenarioKind.BACKUP, ScenarioKind.RESTORE, ScenarioKind.DISK_CHECK, ScenarioKind.OS_INSTALL, ScenarioKind.FIRMWARE}
)
# Kinds no service implements yet: saving or running one is refused at once (DPM-E115) instead of
# netbooting the machine and failing later. A kind leaves this set with the service that runs it.
UNAVAILABLE_KINDS = frozenset({ScenarioKind.OS_INSTALL, ScenarioKind.FIRMWARE})


class DeployEnd(StrEnum):
    """What the deploy environment does once its step is done (netboot kinds only)."""

    REBOOT = "reboot"  # into the local disk: pxe answers "boot local disk" once the execution ended
    POWER_OFF = "power-off"
    STAY = "stay"  # a shell on the console, for debugging; the machine stays in the deploy environment


class Multicast(BaseModel):
    """Delivery conditions of a multicast restore or remote update (seed catalog §2.3.4-2.3.5)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: IPv4
    max_targets: Annotated[int, Field(ge=1, le=10_000)] | None = None
    max_wait_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] | None = None
    max_rate_mbps: Annotated[int, Field(ge=1, le=100_000)] | None = None


def _pairs(value: object) -> object:
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


# Kind-specific parameters: given and shown as a mapping, held as sorted (key, value) pairs, because
# decoded events are cached and shared and a dict would be mutable.
Params = Annotated[
    tuple[tuple[Label, Annotated[Text, Field(max_length=LONG_TEXT_MAX)]], ...],
    BeforeValidator(_pairs),
    PlainSerializer(lambda pairs: dict(pairs), return_type=dict[str, str]),
]


class ScenarioSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ScenarioKind
    reboot_at_start: bool = False
    power_off_at_end: bool = False
    timeout_seconds: Annotated[int, Field(ge=10, le=7 * 86400)] = 3600
    multicast: Multicast | None = None  # None: unicast
    params: Params = ()  # kind-specific (image name, packages, seconds)
    deploy_end: DeployEnd | None = None  # None: power off if power_off_at_end, else reboot into the disk

    def param(self, key: str, default: str) -> str:
        return dict(self.params).get(key, default)

    def end_of_deploy(self) -> DeployEnd:
        """After a netboot step: the scenario's choice, else what "power off at end" says, else a
        reboot into the local disk (so a restored or backed-up machine starts its OS again)."""
        if self.deploy_end is not None:
            return self.deploy_end
        return DeployEnd.POWER_OFF if self.power_off_at_end else DeployEnd.REBOOT


class ScenarioSaved(Event):
    """A scenario's whole definition at one revision (the id never changes; the name may)."""

    wire_name = "ScenarioSaved"

    scenario_id: uuid.UUID
    revision: Annotated[int, Field(ge=1)]
    name: Name
    spec: ScenarioSpec


class ScenarioDeleted(Event):
    wire_name = "ScenarioDeleted"

    scenario_id: uuid.UUID


class ScenarioRunRequested(Event):
    """An operator asked to run a scenario revision on machines (stream ``assignment-<run>``)."""

    wire_name = "ScenarioRunRequested"

    run_id: uuid.UUID
    scenario_id: uuid.UUID
    revision: Annotated[int, Field(ge=1)]
    name: Annotated[Text, Field(max_length=NAME_MAX)]
    spec: ScenarioSpec
    machine_ids: Annotated[tuple[uuid.UUID, ...], Field(min_length=1)]
    not_before: datetime | None = None


class MulticastStartRequested(Event):
    """An operator pressed "start now": the gathering multicast session of this scenario starts with
    the machines that are ready (restore only; remote updates have no start now)."""

    wire_name = "MulticastStartRequested"

    scenario_id: uuid.UUID


class ScenarioAssigned(Event):
    wire_name = "ScenarioAssigned"

    scenario_id: uuid.UUID
    revision: int = Field(ge=1)
    machine_id: uuid.UUID
