"""`dpm up`'s supervisor: a crashed child is restarted with a delay that doubles while it keeps
crashing (and starts over once it ran a while), each crash and restart said with name, exit code,
attempt and delay; a stop request ends the watch even with a restart pending."""

from __future__ import annotations

from dpm_runtime.localstack.supervise import Restarts, supervise


def test_the_delay_doubles_up_to_the_cap_and_starts_over_after_a_stable_run() -> None:
    book = Restarts(first=1.0, cap=8.0, stable=60.0)
    delays = []
    now = 0.0
    for _ in range(5):
        attempt, delay = book.crashed("pxe", now)
        delays.append((attempt, delay))
        now += delay
        assert book.take_due(now - 0.01) == [] and book.take_due(now) == ["pxe"] and book.take_due(now) == []
    assert delays == [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)]
    assert book.crashed("pxe", now + 61) == (1, 1.0)  # it had run for a minute: a new series
    assert book.crashed("api", 0.0) == (1, 1.0)  # each child its own


def test_a_crashed_child_is_restarted_after_its_delay_and_said_so() -> None:
    clock, running, said, restarted = [0.0], {"api": True, "pxe": False}, [], []

    def exited() -> dict[str, int]:
        return {name: -9 for name, up in running.items() if not up}

    def restart(name: str) -> None:
        restarted.append((name, clock[0]))
        running[name] = True

    def stop() -> bool:
        clock[0] += 0.5
        return clock[0] > 3

    supervise(exited, restart, stop, said.append, poll=0, clock=lambda: clock[0])
    assert restarted == [("pxe", 1.5)]  # crashed at 0.5, first delay 1 s
    assert said[:2] == ["pxe exited unexpectedly (exit -9); restart attempt 1 in 1 s", "pxe restarted (attempt 1)"]
    assert "api" not in " ".join(said)


def test_a_stop_request_ends_the_watch_with_a_restart_pending() -> None:
    said: list[str] = []
    ticks = iter([False, True])
    supervise(lambda: {"imager": 1}, lambda name: None, lambda: next(ticks), said.append, poll=0)
    assert said == ["imager exited unexpectedly (exit 1); restart attempt 1 in 1 s"]
