"""Login throttling, pure: one counter per key (a user name, a source address). Every attempt
counts *before* its password is checked, so a burst of concurrent guesses cannot all slip past the
limit; the attempt that reaches the limit locks the key for the lockout period, and a locked key is
refused without hashing anything (the lockout is what keeps a flood from burning CPU)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Policy:
    limit: int  # attempts within ``window`` that lock the key
    window: timedelta
    lockout: timedelta


@dataclass(frozen=True, slots=True)
class LoginPolicies:
    """One policy per key of a login attempt: ``pair`` (user name at one address) locks out for long,
    ``source`` (one address, any name) throttles, ``user`` (one name, any address) only slows down:
    its limit is higher and its lock short, so no one can keep a user out by guessing its password."""

    pair: Policy
    source: Policy
    user: Policy


@dataclass(frozen=True, slots=True)
class Counter:
    attempts: int
    since: datetime
    locked_until: datetime | None = None


def retry_after(counter: Counter | None, now: datetime) -> float | None:
    """Seconds until ``counter`` unlocks, or None when it is open now."""
    if counter is None or counter.locked_until is None or counter.locked_until <= now:
        return None
    return (counter.locked_until - now).total_seconds()


def count(counter: Counter | None, now: datetime, policy: Policy) -> Counter:
    """The counter after one more attempt; an expired window or an ended lockout starts afresh."""
    if counter is None or now - counter.since >= policy.window or counter.locked_until is not None:
        counter = Counter(0, now)
    attempts = counter.attempts + 1
    return Counter(attempts, counter.since, now + policy.lockout if attempts >= policy.limit else None)
