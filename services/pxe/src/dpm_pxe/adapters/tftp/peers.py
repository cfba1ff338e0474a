"""TFTP peers not yet proven: an address that never acknowledged anything may be spoofed, so what it
can draw from the server is bounded -- in bytes per transfer and in transfers per address."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Unacked:
    """Transfers per address that have not seen their first ACK (threads leave, the loop enters)."""

    def __init__(self, per_source: int) -> None:
        self.per_source = per_source
        self.refused = 0
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, address: str) -> Callable[[], None] | None:
        with self._lock:
            if self._held.get(address, 0) >= self.per_source:
                self.refused += 1
                return None
            self._held[address] = self._held.get(address, 0) + 1
        left = threading.Event()

        def leave() -> None:  # idempotent: on the first ACK, and again when the transfer ends
            if left.is_set():
                return
            left.set()
            with self._lock:
                if (count := self._held.get(address, 0) - 1) > 0:
                    self._held[address] = count
                else:
                    self._held.pop(address, None)

        return leave


class Peer:
    """What a transfer may still send its peer before the peer's first ACK proves its address."""

    def __init__(self, leave: Callable[[], None], budget: int) -> None:
        self.leave = leave
        self.budget = budget
        self.sent = 0
        self.acked = False

    def spend(self, size: int, *, first: bool = False) -> bool:
        """Count ``size`` bytes; the first packet always goes (RFC 1350 answers an RRQ with DATA 1)."""
        if not first and self.sent + size > self.budget:
            return False
        self.sent += size
        return True

    def ack(self) -> None:
        self.acked = True
        self.leave()
