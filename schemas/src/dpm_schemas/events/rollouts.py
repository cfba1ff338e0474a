"""Staged rollouts of one package (issue 14, beyond the original): rings of machines -- a canary
group first, then the rest -- each delivered only once the ring before it ended with a failure rate
at or under the rollout's limit. The api starts a rollout (``rollout-<id>``: RolloutStarted, with the
rings' machines resolved from their groups at that moment); the updater runs it (``ring-<id>``:
RolloutRingStarted, then RolloutHalted or RolloutCompleted)."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field, FiniteFloat

from dpm_schemas.base import Event
from dpm_schemas.events.packages import PackageId
from dpm_schemas.text import Name, Text

Ring = Annotated[tuple[uuid.UUID, ...], Field(max_length=10_000)]


class RolloutStarted(Event):
    wire_name = "RolloutStarted"

    rollout_id: uuid.UUID
    package_id: PackageId
    revision: Annotated[int, Field(ge=1)]
    ring_names: Annotated[tuple[Name, ...], Field(min_length=1, max_length=20)]  # the groups, in order
    rings: Annotated[tuple[Ring, ...], Field(min_length=1, max_length=20)]  # their machines then
    max_failure_rate: Annotated[FiniteFloat, Field(ge=0, le=1)] = 0.0


class RolloutRingStarted(Event):
    """Ring ``ring`` is being delivered: ``delivered`` got the package, ``skipped`` did not need it or
    were not online (each with why, in ``message``)."""

    wire_name = "RolloutRingStarted"

    rollout_id: uuid.UUID
    ring: Annotated[int, Field(ge=0)]
    delivered: Ring
    skipped: Annotated[int, Field(ge=0)] = 0
    message: Text = ""


class RolloutHalted(Event):
    """A ring's failure rate passed the limit: the rings after it get nothing."""

    wire_name = "RolloutHalted"

    rollout_id: uuid.UUID
    ring: Annotated[int, Field(ge=0)]
    failed: Annotated[int, Field(ge=0)]
    delivered: Annotated[int, Field(ge=0)]
    message: Text = ""


class RolloutCompleted(Event):
    wire_name = "RolloutCompleted"

    rollout_id: uuid.UUID
    failed: Annotated[int, Field(ge=0)] = 0
    delivered: Annotated[int, Field(ge=0)] = 0
