"""Agent stream (written by agent-gateway): presence transitions only, never heartbeats."""

from __future__ import annotations

import uuid

from dpm_schemas.base import Event


class MachineCameOnline(Event):
    wire_name = "MachineCameOnline"

    machine_id: uuid.UUID
    agent_version: str


class MachineWentOffline(Event):
    wire_name = "MachineWentOffline"

    machine_id: uuid.UUID
    reason: str
