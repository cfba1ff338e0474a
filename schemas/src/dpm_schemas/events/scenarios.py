"""Scenario and assignment streams (written by api)."""

from __future__ import annotations

import uuid

from pydantic import Field

from dpm_schemas.base import Event


class ScenarioAssigned(Event):
    wire_name = "ScenarioAssigned"

    scenario_id: uuid.UUID
    revision: int = Field(ge=1)
    machine_id: uuid.UUID
