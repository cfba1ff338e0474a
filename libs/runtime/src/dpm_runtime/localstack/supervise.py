"""``dpm up``'s supervision: a child that exits unexpectedly is started again, with backoff.

One crashed service used to stop the whole stack -- a full outage for what the other services ride
out in about a second (they reconnect to NATS and PostgreSQL on their own). Now the supervisor says
which child exited, with what code, which attempt the restart is and when it comes; the delay
doubles from ``first`` up to ``cap`` while the child keeps crashing, and starts over once it has run
``stable`` seconds. A stop request (Ctrl-C, SIGTERM) still ends the watch at once, restarts pending
or not: the caller then stops everything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Restarts:
    """When each crashed child may start again: pure bookkeeping over the times it is given."""

    first: float = 1.0
    cap: float = 30.0
    stable: float = 60.0
    attempts: dict[str, int] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)

    def crashed(self, name: str, now: float) -> tuple[int, float]:
        """Record a crash of ``name``; returns (attempt, delay in seconds before it)."""
        if now - self.started.get(name, now) >= self.stable:
            self.attempts.pop(name, None)  # it had run well: this crash is a new series
        attempt = self.attempts.get(name, 0) + 1
        delay = min(self.first * 2.0 ** (attempt - 1), self.cap)
        self.attempts[name], self.due[name] = attempt, now + delay
        return attempt, delay

    def pending(self, name: str) -> bool:
        return name in self.due

    def take_due(self, now: float) -> list[str]:
        """The children whose restart is due now (each handed out once per crash)."""
        ready = [name for name, at in self.due.items() if at <= now]
        for name in ready:
            del self.due[name]
            self.started[name] = now
        return ready


Exited = Callable[[], dict[str, int]]  # the children that are not running now: name -> exit code


def supervise(
    exited: Exited,
    restart: Callable[[str], None],
    stop: Callable[[], bool],
    say: Callable[[str], None],
    *,
    restarts: Restarts | None = None,
    poll: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Until ``stop()``: restart every child that exited, with backoff, and say so."""
    book = restarts or Restarts()
    while not stop():
        now = clock()
        for name, code in exited().items():
            if not book.pending(name):
                attempt, delay = book.crashed(name, now)
                say(f"{name} exited unexpectedly (exit {code}); restart attempt {attempt} in {delay:.0f} s")
        for name in book.take_due(now):
            try:
                restart(name)
                say(f"{name} restarted (attempt {book.attempts[name]})")
            except Exception as exc:  # it stays down: the next look finds it exited and backs off further
                say(f"{name} did not restart: {exc}")
        time.sleep(poll)
