"""The bootstrap token's lifetime rules, pure: accepted strictly before first use + max age, a
warning in its last day, revocation before expiry, and a token never used has not started its clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dpm_api.domain.bootstrap_token import Lifetime, Use, Verdict, expires_at, verdict, warning_due

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEEK = Lifetime(max_age=timedelta(days=7))


def test_accepted_until_just_before_first_use_plus_max_age_then_expired() -> None:
    use = Use(revoked=False, first_used_at=T0)
    assert expires_at(use, WEEK) == T0 + timedelta(days=7)
    assert verdict(use, WEEK, T0) is Verdict.ACCEPTED
    assert verdict(use, WEEK, T0 + timedelta(days=6)) is Verdict.EXPIRING  # its last day: warn
    assert verdict(use, WEEK, T0 + timedelta(days=7, microseconds=-1)) is Verdict.EXPIRING
    assert verdict(use, WEEK, T0 + timedelta(days=7)) is Verdict.EXPIRED


def test_a_token_never_used_has_no_expiry_yet_and_revocation_wins() -> None:
    unused = Use(revoked=False, first_used_at=None)
    assert expires_at(unused, WEEK) is None and verdict(unused, WEEK, T0) is Verdict.ACCEPTED
    assert verdict(Use(revoked=True, first_used_at=None), WEEK, T0) is Verdict.REVOKED
    assert verdict(Use(revoked=True, first_used_at=T0), WEEK, T0 + timedelta(days=30)) is Verdict.REVOKED


def test_the_expiry_warning_is_logged_at_most_once_an_hour() -> None:
    assert warning_due(None, T0)
    assert not warning_due(T0, T0 + timedelta(minutes=59))
    assert warning_due(T0, T0 + timedelta(hours=1))
