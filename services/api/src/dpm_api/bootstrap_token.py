"""The bootstrap token (DPM_API_TOKEN): an admin credential from the environment, for the first
login and for `dpm up` on one host. It can be switched off (DPM_API_TOKEN_ENABLED=false) or revoked
by an admin (BootstrapTokenRevoked, which every replica honours through this projection), and it
expires DPM_API_TOKEN_MAX_AGE after the first time an api accepted it (BootstrapTokenFirstUsed, one
per value, in its own stream appended only as new: replicas racing on the first use agree on the
first appended, and a restart reads it back; docs/adr/0011). Rotating it means a new DPM_API_TOKEN
(`dpm up`: delete var/api-token) and a restart -- the revoked or expired value stays refused.

Without the bootstrap token only admin users can administer dpm, so the token is never withdrawn
while no enabled admin user with a password exists: revoking it then is refused (DPM-E415), and an
api started with DPM_API_TOKEN_ENABLED=false and no admin user logs a warning with that code (it
still starts: viewers and operators can keep working, and refusing to start would only crash-loop).

The token is checked on every request it comes with; within a day of its expiry the api logs a
warning, at most once an hour per process."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dpm_api import auth
from dpm_api.domain.bootstrap_token import Lifetime, Use, Verdict, expires_at, verdict, warning_due
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import ANY_VERSION, NO_STREAM, Conn, EventLog, StreamConflict
from dpm_runtime.service import Runtime
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import BootstrapTokenFirstUsed, BootstrapTokenRevoked
from dpm_schemas.events.users import Role
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)


class RevokedBootstrapTokens:
    """``api.revoked_bootstrap_tokens``: the SHA-256 of every bootstrap token an admin revoked."""

    name = "revoked_bootstrap_tokens"
    schema = "api"
    tables = ("revoked_bootstrap_tokens",)
    event_types = (BootstrapTokenRevoked.wire_name,)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".revoked_bootstrap_tokens (token_sha256 text PRIMARY KEY,'
            " revoked_at timestamptz NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            assert isinstance(e, BootstrapTokenRevoked)
            await conn.execute(
                f'INSERT INTO "{schema}".revoked_bootstrap_tokens (token_sha256, revoked_at) VALUES (%s, %s)'
                " ON CONFLICT DO NOTHING",
                (e.token_sha256, rec.occurred_at),
            )


class BootstrapTokenUses:
    """``api.bootstrap_token_uses``: when each bootstrap token value was first accepted. The first
    event of a value wins (there is one, its stream being appended only as new)."""

    name = "bootstrap_token_uses"
    schema = "api"
    tables = ("bootstrap_token_uses",)
    event_types = (BootstrapTokenFirstUsed.wire_name,)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".bootstrap_token_uses (token_sha256 text PRIMARY KEY,'
            " first_used_at timestamptz NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            assert isinstance(e, BootstrapTokenFirstUsed)
            await conn.execute(
                f'INSERT INTO "{schema}".bootstrap_token_uses (token_sha256, first_used_at) VALUES (%s, %s)'
                " ON CONFLICT DO NOTHING",
                (e.token_sha256, e.at),
            )


@dataclass(slots=True)
class BootstrapToken:
    """The bootstrap token this api accepts (None: unset or disabled), its lifetime, and when this
    process last warned that it expires soon."""

    value: str | None
    lifetime: Lifetime
    warned_at: datetime | None = None

    def matches(self, token: str) -> bool:
        return self.value is not None and hmac.compare_digest(token.encode(), self.value.encode())


def first_use_stream(token_sha256: str) -> str:
    return stream_id(subjects.USER, f"{auth.BOOTSTRAP_USER}-{token_sha256[:32]}")


async def read_use(conn: Conn, token_sha256: str) -> Use:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM api.revoked_bootstrap_tokens WHERE token_sha256 = %s),"
        " (SELECT first_used_at FROM api.bootstrap_token_uses WHERE token_sha256 = %s)",
        (token_sha256, token_sha256),
    )
    row = await cur.fetchone()
    assert row is not None
    return Use(revoked=bool(row[0]), first_used_at=row[1])


async def principal(rt: Runtime, token: BootstrapToken, now: datetime) -> auth.Principal:
    """The bootstrap principal (admin), or DPM-E413 (revoked) / DPM-E425 (expired); its first
    acceptance is recorded before it is accepted."""
    assert token.value is not None
    digest = auth.sha256(token.value)
    async with rt.pool.connection() as conn:
        use = await read_use(conn, digest)
    if use.first_used_at is None and not use.revoked:
        use = await _record_first_use(rt, digest, now)
    found = verdict(use, token.lifetime, now)
    if found is Verdict.REVOKED:
        raise E.BOOTSTRAP_TOKEN_REVOKED()
    if found is Verdict.EXPIRED:
        raise _expired(use, token.lifetime)
    if found is Verdict.EXPIRING and warning_due(token.warned_at, now):
        token.warned_at = now
        _warn(use, token.lifetime, now)
    return auth.Principal(auth.BOOTSTRAP_USER, Role.ADMIN)


async def _record_first_use(rt: Runtime, digest: str, now: datetime) -> Use:
    """Append the value's first use (a new stream), or, when another request or replica was first,
    read back its instant: fail closed (DPM-E022) rather than accept a token whose clock is unknown."""
    event = BootstrapTokenFirstUsed(token_sha256=digest, at=now)
    try:
        appended = await rt.eventlog.append(
            first_use_stream(digest), NO_STREAM, [NewEvent(event, command_metadata(auth.BOOTSTRAP_USER))]
        )
    except StreamConflict:
        position = await rt.eventlog.head()
    else:
        await rt.projections[BootstrapTokenUses.name].wait_for(appended.position, timeout=5)
        return Use(revoked=False, first_used_at=now)
    await rt.projections[BootstrapTokenUses.name].wait_for(position, timeout=5)
    async with rt.pool.connection() as conn:
        use = await read_use(conn, digest)
    if use.first_used_at is None:
        raise E.NOT_READY(service="api", reason="the bootstrap token's first use is not in its read model yet")
    return use


def _expired(use: Use, lifetime: Lifetime) -> Exception:
    assert use.first_used_at is not None
    return E.BOOTSTRAP_TOKEN_EXPIRED(
        expires_at=_iso(expires_at(use, lifetime)),
        first_used_at=_iso(use.first_used_at),
        max_age_hours=round(lifetime.max_age.total_seconds() / 3600, 1),
    )


def _warn(use: Use, lifetime: Lifetime, now: datetime) -> None:
    ends = expires_at(use, lifetime)
    assert ends is not None
    log.warning(
        "the bootstrap token (DPM_API_TOKEN) expires at %s, in %.1f hours (%s then): %s",
        _iso(ends),
        (ends - now).total_seconds() / 3600,
        E.BOOTSTRAP_TOKEN_EXPIRED.code,
        E.BOOTSTRAP_TOKEN_EXPIRED.remedy,
    )


def _iso(at: datetime | None) -> str:
    return "-" if at is None else at.isoformat(timespec="seconds")


async def status(rt: Runtime, token: BootstrapToken, now: datetime) -> dict[str, object]:
    """What an admin may know of the bootstrap token: never the value, only its state and times."""
    out: dict[str, object] = {"enabled": token.value is not None, "max_age_seconds": None, "revoked": False,
                              "first_used_at": None, "expires_at": None, "expired": False}  # fmt: skip
    if token.value is None:
        return out
    async with rt.pool.connection() as conn:
        use = await read_use(conn, auth.sha256(token.value))
    found = verdict(use, token.lifetime, now)
    out.update(max_age_seconds=token.lifetime.max_age.total_seconds(), revoked=use.revoked,
               first_used_at=use.first_used_at, expires_at=expires_at(use, token.lifetime),
               expired=found is Verdict.EXPIRED)  # fmt: skip
    return out


async def revoke(eventlog: EventLog, conn: Conn, token: str | None, *, actor: str) -> int:
    """Revoke the bootstrap token this api was started with; its position, to wait for."""
    if token is None:
        raise E.INVALID_REQUEST(reason="this api has no bootstrap token (DPM_API_TOKEN unset or disabled)")
    if not await admin_exists(conn):
        raise E.NO_ADMIN_USER(action="revoking the bootstrap token")
    event = BootstrapTokenRevoked(token_sha256=auth.sha256(token))
    result = await eventlog.append(
        stream_id(subjects.USER, auth.BOOTSTRAP_USER),
        ANY_VERSION,
        [NewEvent(event, command_metadata(actor))],
        conn=conn,
    )
    return result.position


async def admin_exists(conn: Conn) -> bool:
    """Whether some enabled admin user can log in (has a password)."""
    cur = await conn.execute(
        "SELECT 1 FROM api.users u JOIN api.credentials c USING (username)"
        " WHERE u.role = 'admin' AND NOT u.disabled LIMIT 1"
    )
    return await cur.fetchone() is not None


async def warn_without_admin(rt: Runtime) -> None:
    """At start, with the bootstrap token disabled: once the accounts read model has caught up
    with the log, warn (DPM-E415) when no one could administer dpm."""
    try:
        await rt.projections["accounts"].wait_for(await rt.eventlog.head(), timeout=60)
        async with rt.pool.connection() as conn:
            if await admin_exists(conn):
                return
    except Exception as exc:  # a start-up check: it must never stop the api
        log.warning("could not check for an admin user: %r", exc)
        return
    err = E.NO_ADMIN_USER(action="DPM_API_TOKEN_ENABLED=false")
    log.warning("%s: %s %s", err.code, err.message, err.remedy)
