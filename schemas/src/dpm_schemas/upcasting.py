"""Upcasters lift stored payloads of old schema versions to the current one, on read.

Register ``fn(data) -> data`` for (wire name, from_version); the codec applies the chain
v1 -> v2 -> ... until the class's current ``wire_version``. Stored rows are never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(wire_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function lifting ``wire_name`` payloads from ``from_version`` to the next."""

    def register(fn: Upcaster) -> Upcaster:
        key = (wire_name, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"upcaster for {wire_name} v{from_version} already registered")
        _UPCASTERS[key] = fn
        return fn

    return register


class MissingUpcaster(LookupError):
    """A stored payload is older than its class and no upcaster bridges the gap."""


def upcast(wire_name: str, version: int, target: int, data: Payload) -> Payload:
    while version < target:
        try:
            data = _UPCASTERS[(wire_name, version)](data)
        except KeyError:
            raise MissingUpcaster(f"{wire_name}: no upcaster from v{version} (current v{target})") from None
        version += 1
    return data
