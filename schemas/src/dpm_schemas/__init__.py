"""dpm contracts: typed events and commands, the envelope, the codec, subjects, ports and error codes.

Importing this package registers every message class; it performs no I/O.
"""

from dpm_schemas import events, ports, subjects
from dpm_schemas.base import REGISTRY, Command, Event, Message, UnknownMessageType
from dpm_schemas.envelope import Metadata, NewEvent, RecordedEvent
from dpm_schemas.errors import CATALOGUE, DpmError, E, ErrorCode

__all__ = [
    "CATALOGUE",
    "REGISTRY",
    "Command",
    "DpmError",
    "E",
    "ErrorCode",
    "Event",
    "Message",
    "Metadata",
    "NewEvent",
    "RecordedEvent",
    "UnknownMessageType",
    "events",
    "ports",
    "subjects",
]
