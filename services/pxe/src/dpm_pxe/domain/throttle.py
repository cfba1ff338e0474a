"""How often pxe records a boot (pure): once per window for a repeated (MAC, stage), and unknown MACs
within a token bucket per client address and one for everyone.

Anyone on the boot network can send DHCP packets or fetch scripts with made-up MACs, and every unknown
MAC used to become MachineDiscovered, MachineBooted and an auto-registered machine -- an unbounded write
driven by an anonymous peer. A real room boots a few new machines at a time; a flood is cut at the
bound and counted (``dropped``, in /statusz), never written.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

MAX_SOURCES = 4096  # addresses remembered; the least recently seen is forgotten first
MAX_REPEATS = 10_000  # keys remembered before the old ones are forgotten


@dataclass
class Repeats:
    """``fresh(key)``: is this the first sighting of ``key`` within ``window`` seconds? A ROM repeats its
    DISCOVER several times, and one boot is one record. Bounded whatever the number of keys."""

    window: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[Hashable, float] = field(default_factory=dict)

    def fresh(self, key: Hashable) -> bool:
        now = self.clock()
        if len(self._seen) > MAX_REPEATS:
            self._seen = {k: t for k, t in self._seen.items() if now - t < self.window}
        last = self._seen.get(key)
        if last is not None and now - last < self.window:
            return False
        self._seen[key] = now
        return True

    def forget(self, key: Hashable) -> None:
        """``key`` was not recorded after all: its next sighting is tried again."""
        self._seen.pop(key, None)


@dataclass
class Bucket:
    rate: float  # tokens per second
    burst: float  # capacity
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class DiscoveryLimiter:
    """``allow(source)``: may one more unknown MAC seen from ``source`` be recorded now?"""

    rate: float = 0.5
    burst: int = 20
    global_rate: float = 5.0
    global_burst: int = 200
    clock: Callable[[], float] = time.monotonic
    allowed: int = 0
    dropped: int = 0
    _sources: OrderedDict[str, Bucket] = field(default_factory=OrderedDict)
    _global: Bucket | None = None

    def allow(self, source: str | None) -> bool:
        now = self.clock()
        if self._global is None:
            self._global = Bucket(self.global_rate, self.global_burst, self.global_burst, now)
        key = source or "-"
        bucket = self._sources.get(key)
        if bucket is None:
            bucket = self._sources[key] = Bucket(self.rate, self.burst, self.burst, now)
            if len(self._sources) > MAX_SOURCES:
                self._sources.popitem(last=False)
        self._sources.move_to_end(key)
        # the source's bucket first: one noisy address must not use up everyone's share
        if not bucket.take(now) or not self._global.take(now):
            self.dropped += 1
            return False
        self.allowed += 1
        return True

    def stats(self) -> dict[str, int]:
        return {"discovery_recorded": self.allowed, "discovery_dropped": self.dropped}
