"""Login throttling rules, pure: the attempt that reaches the limit locks; a lockout ends; a window
that has passed starts afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dpm_api.domain.throttle import Policy, count, retry_after

T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = Policy(limit=3, window=timedelta(minutes=5), lockout=timedelta(minutes=10))


def test_the_attempt_that_reaches_the_limit_locks_until_the_lockout_ends() -> None:
    counter = None
    for i in range(3):
        assert retry_after(counter, T0) is None, i
        counter = count(counter, T0, POLICY)
    assert retry_after(counter, T0) == 600
    assert retry_after(counter, T0 + timedelta(minutes=10)) is None
    after = count(counter, T0 + timedelta(minutes=10), POLICY)
    assert after.attempts == 1 and after.locked_until is None  # a fresh start


def test_attempts_older_than_the_window_no_longer_count() -> None:
    counter = count(count(None, T0, POLICY), T0, POLICY)
    later = count(counter, T0 + timedelta(minutes=6), POLICY)
    assert later.attempts == 1 and later.since == T0 + timedelta(minutes=6)
