"""The envelope around every event: identity, stream position, causality and trace context.

The same fields travel in the PostgreSQL ``events`` row and in the NATS message, so a consumer
never needs the database to know where an event came from or which trace it belongs to.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from dpm_schemas.base import Event


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who caused an event and within which conversation and trace."""

    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    actor: str = "system"
    traceparent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "correlation_id": str(self.correlation_id),
            "causation_id": str(self.causation_id) if self.causation_id else None,
            "actor": self.actor,
            "traceparent": self.traceparent,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Metadata:
        causation = raw.get("causation_id")
        return cls(
            correlation_id=uuid.UUID(raw["correlation_id"]),
            causation_id=uuid.UUID(causation) if causation else None,
            actor=raw.get("actor") or "system",
            traceparent=raw.get("traceparent"),
        )

    @classmethod
    def unread(cls) -> Metadata:
        """Stands in when a reader asked not to load metadata (projections fold state, not causality)."""
        return _UNREAD

    @classmethod
    def new(cls, *, actor: str = "system", traceparent: str | None = None) -> Metadata:
        """Start a new conversation (the correlation id of a user action or a timer)."""
        return cls(correlation_id=uuid.uuid4(), actor=actor, traceparent=traceparent)

    def caused_by(self, parent: RecordedEvent, *, traceparent: str | None = None) -> Metadata:
        """Metadata for an event appended in reaction to ``parent``: same conversation, new cause."""
        return Metadata(
            correlation_id=parent.metadata.correlation_id,
            causation_id=parent.event_id,
            actor=self.actor,
            traceparent=traceparent or parent.metadata.traceparent,
        )


_UNREAD = Metadata(correlation_id=uuid.UUID(int=0), actor="unread")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended: the payload plus its id and metadata."""

    event: Event
    metadata: Metadata
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


class RecordedEvent(NamedTuple):
    """An event as stored: payload plus envelope, with its global ``position`` in the log.

    A NamedTuple, not a frozen dataclass: a projection rebuild builds millions of them, and a frozen
    dataclass pays ``object.__setattr__`` per field.
    """

    event_id: uuid.UUID
    type: str
    version: int
    stream_id: str
    stream_version: int
    position: int
    occurred_at: datetime
    metadata: Metadata
    event: Event

    @property
    def category(self) -> str:
        """The stream category: ``machine`` for ``machine-<uuid>``."""
        return self.stream_id.split("-", 1)[0]


def utcnow() -> datetime:
    return datetime.now(UTC)
