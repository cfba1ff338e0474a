"""A clock tests move by hand: services take their clock injected (``app.state.clock``,
``bootstrap(clock=...)``), so a test of a timeout advances time instead of sleeping it out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ManualClock:
    """Callable like ``datetime.now(UTC)``; ``advance(minutes=25)`` moves it (any timedelta keyword)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
