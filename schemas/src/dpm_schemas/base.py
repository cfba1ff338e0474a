"""Frozen, versioned message bases and the wire-name registry.

Every stored or transmitted fact is a subclass of ``Event``; every request to act is a ``Command``.
Classes are addressed on the wire by a stable ``wire_name`` and ``wire_version`` -- never by their
Python module path -- so moving or renaming a class never breaks the stored log.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """Common base: immutable, strict about unknown fields, addressed by wire name and version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wire_name: ClassVar[str]
    wire_version: ClassVar[int] = 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "wire_name" in cls.__dict__:
            REGISTRY.add(cls)


class Event(Message):
    """A fact, named in the past tense. Stored in the event log unless ``transient``."""

    # Transient signals (progress, heartbeats) travel over NATS only and are refused by the log.
    transient: ClassVar[bool] = False


class Command(Message):
    """A request to act, named in the imperative. Sent over NATS to the one service that owns it."""


class UnknownMessageType(LookupError):
    """Raised when a wire name has no registered class."""


class Registry:
    """Maps wire names to message classes (and back) for the codec and the schema generator."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[Message]] = {}

    def add(self, cls: type[Message]) -> None:
        existing = self._by_name.get(cls.wire_name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"wire name {cls.wire_name!r} used by {existing!r} and {cls!r}")
        self._by_name[cls.wire_name] = cls

    def get(self, wire_name: str) -> type[Message]:
        try:
            return self._by_name[wire_name]
        except KeyError:
            raise UnknownMessageType(wire_name) from None

    def __contains__(self, wire_name: object) -> bool:
        return wire_name in self._by_name

    def all(self) -> list[type[Message]]:
        return [self._by_name[name] for name in sorted(self._by_name)]

    def events(self) -> list[type[Event]]:
        return [c for c in self.all() if issubclass(c, Event)]

    def commands(self) -> list[type[Command]]:
        return [c for c in self.all() if issubclass(c, Command)]


REGISTRY = Registry()
