"""The one msgpack codec for payloads (stored in the log) and envelopes (sent over NATS).

Payloads are encoded from ``model_dump(mode="json")`` so UUIDs, datetimes and enums become plain
strings: any msgpack reader (another language, a debugging tool) can read the log.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any, cast

import msgpack

from dpm_schemas.base import REGISTRY, Event, Message
from dpm_schemas.envelope import Metadata, RecordedEvent
from dpm_schemas.upcasting import upcast


class DecodeError(ValueError):
    """The bytes are not a valid dpm message; a consumer terminates such a message as poison."""


def encode_payload(message: Message) -> bytes:
    return cast(bytes, msgpack.packb(message.model_dump(mode="json"), use_bin_type=True))


def decode_payload(wire_name: str, version: int, raw: bytes) -> Message:
    """Decode (and upcast) a stored payload.

    Results are cached by the exact bytes: messages are frozen and their fields immutable (a test
    enforces it), so sharing one decoded instance is safe -- and a fleet's log repeats itself (the
    same machine boots with the same MAC, architecture and address), which makes replays cheap.
    """
    return _decode_cached(wire_name, version, bytes(raw))


@functools.lru_cache(maxsize=65536)
def _decode_cached(wire_name: str, version: int, raw: bytes) -> Message:
    cls = REGISTRY.get(wire_name)
    try:
        data = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise DecodeError(f"{wire_name}: payload is not msgpack: {exc}") from exc
    if not isinstance(data, dict):
        raise DecodeError(f"{wire_name}: payload is {type(data).__name__}, not a map")
    if version != cls.wire_version:
        if version > cls.wire_version:
            raise DecodeError(f"{wire_name}: stored v{version} is newer than this code's v{cls.wire_version}")
        data = upcast(wire_name, version, cls.wire_version, data)
    return cls.model_validate(data)


def encode_envelope(rec: RecordedEvent) -> bytes:
    """The NATS message body: envelope fields plus the payload as a nested map."""
    body = {
        "event_id": rec.event_id.bytes,
        "type": rec.type,
        "version": rec.version,
        "stream_id": rec.stream_id,
        "stream_version": rec.stream_version,
        "position": rec.position,
        "occurred_at": rec.occurred_at.isoformat(),
        "metadata": rec.metadata.to_dict(),
        "data": encode_payload(rec.event),
    }
    return cast(bytes, msgpack.packb(body, use_bin_type=True))


def envelope_from_row(
    *,
    event_id: uuid.UUID,
    wire_type: str,
    version: int,
    stream_id: str,
    stream_version: int,
    position: int,
    occurred_at: datetime,
    metadata: dict[str, Any],
    data: bytes,
) -> bytes:
    """Build the NATS body from a log row as stored: the relay never decodes payloads."""
    body = {
        "event_id": event_id.bytes,
        "type": wire_type,
        "version": version,
        "stream_id": stream_id,
        "stream_version": stream_version,
        "position": position,
        "occurred_at": occurred_at.isoformat(),
        "metadata": metadata,
        "data": data,
    }
    return cast(bytes, msgpack.packb(body, use_bin_type=True))


def decode_envelope(raw: bytes) -> RecordedEvent:
    try:
        body = msgpack.unpackb(raw, raw=False)
        wire_name = body["type"]
        event = decode_payload(wire_name, int(body["version"]), body["data"])
        if not isinstance(event, Event):
            raise DecodeError(f"{wire_name} is a command, not an event")
        return RecordedEvent(
            event_id=uuid.UUID(bytes=body["event_id"]),
            type=wire_name,
            version=event.wire_version,
            stream_id=body["stream_id"],
            stream_version=int(body["stream_version"]),
            position=int(body["position"]),
            occurred_at=datetime.fromisoformat(body["occurred_at"]),
            metadata=Metadata.from_dict(body["metadata"]),
            event=event,
        )
    except DecodeError:
        raise
    except Exception as exc:  # any malformed body is one kind of failure for the caller: poison
        raise DecodeError(f"malformed envelope: {type(exc).__name__}: {exc}") from exc
