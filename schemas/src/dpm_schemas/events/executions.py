"""Execution streams (written by the scheduler, one per scenario run per machine) and step reports
(stream ``step-<execution>``, written by whichever service implements the step).

The step protocol: the scheduler appends StepRequested when an execution reaches its running phase;
the service that implements the kind (imager for backup/restore, updater for remote updates, the
deploy environment through the api) appends StepReported -- progress, then completed or failed with
a code. The scheduler completes or fails the execution on the final report, or fails it with
DPM-E145 when no report comes within the no-response timeout. ``simulated`` steps are completed by
the scheduler itself.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from dpm_schemas.base import Event
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.text import NAME_MAX, Label, LongText, Text


class StartAction(StrEnum):
    WAKE = "wake"  # Wake-on-LAN, then wait for the network boot (or the agent, for remote updates)
    REBOOT = "reboot"  # reboot through the agent, then wait for the network boot
    RUN = "run"  # already where it must be: the step starts at once


class StepStatus(StrEnum):
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"


class ExecutionQueued(Event):
    wire_name = "ExecutionQueued"

    execution_id: uuid.UUID
    run_id: uuid.UUID
    machine_id: uuid.UUID
    scenario_id: uuid.UUID
    revision: int
    name: Annotated[Text, Field(max_length=NAME_MAX)]
    spec: ScenarioSpec


class ExecutionStarted(Event):
    """A slot of the concurrency limit is taken; ``action`` says how the machine is brought in."""

    wire_name = "ExecutionStarted"

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    action: StartAction


class StepRequested(Event):
    wire_name = "StepRequested"

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    step: Label
    spec: ScenarioSpec
    session_id: uuid.UUID | None = None  # the multicast session the step belongs to


class ExecutionWaiting(Event):
    """Ready, waiting for its multicast session to start ("waiting for restore" in the original)."""

    wire_name = "ExecutionWaiting"

    execution_id: uuid.UUID
    machine_id: uuid.UUID


class MulticastSessionStarted(Event):
    """A multicast session starts with the ready machines of one scenario (stream ``session-<id>``)."""

    wire_name = "MulticastSessionStarted"

    session_id: uuid.UUID
    scenario_id: uuid.UUID
    group: Label
    machine_ids: tuple[uuid.UUID, ...]
    execution_ids: tuple[uuid.UUID, ...]
    reason: Label  # max-targets | max-wait | start-now | immediately


class StepReported(Event):
    wire_name = "StepReported"

    execution_id: uuid.UUID
    step: Label
    status: StepStatus
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    code: Label | None = None
    message: Annotated[LongText, Field(max_length=1000)] = ""


class ExecutionCompleted(Event):
    wire_name = "ExecutionCompleted"

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    # "power off at end": "sent" when the agent took the shutdown, else its error code; None: not asked.
    # Netboot kinds power off from the deploy environment (their step), so this is for agent kinds.
    power_off: Label | None = None


class ExecutionFailed(Event):
    wire_name = "ExecutionFailed"

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    code: Label
    reason: LongText


class SuspendRequested(Event):
    """An operator interrupts an execution (stream ``assignment-<run>``, written by api)."""

    wire_name = "SuspendRequested"

    execution_id: uuid.UUID
    run_id: uuid.UUID


class StepCancelRequested(Event):
    """The scheduler asks the service running the step to stop; it answers with a final StepReported."""

    wire_name = "StepCancelRequested"

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    step: Label


class ExecutionSuspended(Event):
    """Interrupted. ``confirmed`` is False when the machine did not confirm the stop within the suspend
    timeout (the original's "interrupt could not complete"): only a force clear frees it."""

    wire_name = "ExecutionSuspended"

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    confirmed: bool
    reason: LongText = ""
