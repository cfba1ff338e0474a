"""The bootstrap token's lifetime, pure: it is accepted for ``max_age`` from the first time an api
accepted that value (a fact in the log, so every replica and every restart counts from the same
instant), refused once revoked or expired, and worth a warning in the last ``warn_before``. A new
value has no first use yet, so rotating the token starts a fresh lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Lifetime:
    max_age: timedelta
    warn_before: timedelta = timedelta(days=1)


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    EXPIRING = "expiring"  # accepted, but within ``warn_before`` of its end
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Use:
    """What the log says of one token value: revoked, and since when it is in use (None: never used)."""

    revoked: bool
    first_used_at: datetime | None


def expires_at(use: Use, lifetime: Lifetime) -> datetime | None:
    """When the token stops being accepted; None while it was never used (its clock has not started)."""
    return None if use.first_used_at is None else use.first_used_at + lifetime.max_age


def verdict(use: Use, lifetime: Lifetime, now: datetime) -> Verdict:
    """Revocation wins over expiry; the token is accepted strictly before its expiry instant."""
    if use.revoked:
        return Verdict.REVOKED
    ends = expires_at(use, lifetime)
    if ends is None:
        return Verdict.ACCEPTED  # its first use is now: the caller records it
    if now >= ends:
        return Verdict.EXPIRED
    return Verdict.EXPIRING if ends - now <= lifetime.warn_before else Verdict.ACCEPTED


def warning_due(last: datetime | None, now: datetime, every: timedelta = timedelta(hours=1)) -> bool:
    """At most one expiry warning per ``every`` (per process): a busy script must not flood the log."""
    return last is None or now - last >= every
