"""Effects as data: what the scheduler wants done outside its transaction. They are stored with the
decision (the outbox, adapters/effects_sql.py) and run only after the commit, so a rollback sends
nothing and a crash between commit and effect costs a repeat, never a loss. (Seam for the handler
kernel: each effect becomes one ``ctx.after_commit`` call.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from dpm_schemas.events.schedules import ScheduleAction


@dataclass(frozen=True)
class Wake:
    """Wake-on-LAN, through the one power-on pacing gate (operator, scenario and schedule wakes)."""

    machine_id: uuid.UUID
    execution_id: uuid.UUID | None = None  # None: an operator's power-on (its watch verifies it)


@dataclass(frozen=True)
class Reboot:
    """The agent reboots the machine into the network boot."""

    machine_id: uuid.UUID
    execution_id: uuid.UUID


@dataclass(frozen=True)
class Shutdown:
    """The agent shuts the machine down at the end of its execution ("power off at end")."""

    machine_id: uuid.UUID
    execution_id: uuid.UUID


@dataclass(frozen=True)
class SchedulePower:
    """A schedule's power-on or power-off of its free machines; the firing is recorded with the outcome."""

    schedule_id: uuid.UUID
    name: str
    action: ScheduleAction
    machine_ids: tuple[uuid.UUID, ...]


Effect = Wake | Reboot | Shutdown | SchedulePower
