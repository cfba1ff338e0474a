"""Schedules: definitions (stream ``schedule-<id>``, written by api) and what became of each firing
(stream ``firing-<id>``, written by the scheduler). One-shot (``at``) or recurring (``cron``, five
fields, in ``timezone``), for scenario runs and for power on/off of machines or a group."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from dpm_schemas.base import Event
from dpm_schemas.text import Label, LongText, Name, Text


class ScheduleAction(StrEnum):
    RUN = "run"
    POWER_ON = "power-on"
    POWER_OFF = "power-off"


class ScheduleSaved(Event):
    wire_name = "ScheduleSaved"

    schedule_id: uuid.UUID
    name: Name
    action: ScheduleAction
    scenario_id: uuid.UUID | None = None  # for runs: the scenario's latest revision when it fires
    machine_ids: tuple[uuid.UUID, ...] = ()
    group: Label | None = None  # every machine of the group when it fires
    at: datetime | None = None
    cron: Annotated[Text, Field(max_length=200)] | None = None
    timezone: Annotated[Label, Field(max_length=64)] = "UTC"
    enabled: bool = True


class ScheduleDeleted(Event):
    wire_name = "ScheduleDeleted"

    schedule_id: uuid.UUID


class ScheduleFired(Event):
    wire_name = "ScheduleFired"

    schedule_id: uuid.UUID
    action: ScheduleAction
    machine_ids: tuple[uuid.UUID, ...]  # acted on
    run_id: uuid.UUID | None = None
    failures: tuple[tuple[uuid.UUID, Label], ...] = ()  # (machine, error code), e.g. the agent was offline


class ScheduleSkipped(Event):
    """A firing left a machine alone, and why (a power schedule meeting a running scenario)."""

    wire_name = "ScheduleSkipped"

    schedule_id: uuid.UUID
    machine_id: uuid.UUID | None
    reason: Annotated[LongText, Field(max_length=500)]
