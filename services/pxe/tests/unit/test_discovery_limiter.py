"""The discovery limiter: a burst per address and in all, refilled over time, excess counted."""

from __future__ import annotations

from dpm_pxe.domain.throttle import MAX_SOURCES, DiscoveryLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_source_is_cut_at_its_burst_and_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = DiscoveryLimiter(rate=1.0, burst=3, global_rate=100, global_burst=100, clock=clock)
    assert [limiter.allow("10.0.0.9") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("10.0.0.8")  # another address has its own share
    clock.now = 2.0
    assert [limiter.allow("10.0.0.9") for _ in range(3)] == [True, True, False]
    assert limiter.stats() == {"discovery_recorded": 6, "discovery_dropped": 3}


def test_many_sources_are_cut_by_the_global_bucket_and_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = DiscoveryLimiter(rate=1.0, burst=1, global_rate=1.0, global_burst=10, clock=clock)
    allowed = sum(limiter.allow(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}") for i in range(MAX_SOURCES * 2))
    assert allowed == 10 and limiter.dropped == MAX_SOURCES * 2 - 10
    assert len(limiter._sources) == MAX_SOURCES
