"""Who is calling: the bootstrap token (bootstrap_token.py), an API token (``dpmt_...``), or a login
session (``dpms_...``), each resolved to a user and a role. Passwords are scrypt hashes in
``api.credentials`` -- never in the event log or on the bus; sessions live in ``api.sessions`` and
end after an idle period or, however busy, after an absolute lifetime. Times come from the caller's
clock (tests inject one).

scrypt costs ~16 MiB and ~50 ms of a core per check, so it never runs on the event loop: a
``Hasher`` runs it in worker threads, a few at a time, and logins queue for a slot while every
other route keeps answering."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from dpm_runtime.eventlog import Conn
from dpm_schemas import E
from dpm_schemas.events.users import Role

SESSION_PREFIX = "dpms_"
TOKEN_PREFIX = "dpmt_"  # noqa: S105 -- a prefix, not a secret
BOOTSTRAP_USER = "bootstrap"

DDL = [
    "CREATE SCHEMA IF NOT EXISTS api",
    "CREATE TABLE IF NOT EXISTS api.credentials (username text PRIMARY KEY, password_scrypt text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS api.sessions (token_sha256 text PRIMARY KEY, username text NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now(), last_used timestamptz NOT NULL DEFAULT now())",
]

_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~16 MiB and ~50 ms per check


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: Role

    def require(self, needed: Role, action: str) -> None:
        if self.role.rank < needed.rank:
            raise E.FORBIDDEN(username=self.username, role=self.role.value, action=action, needed=needed.value)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta
    max_age: timedelta


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _scheme, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


_EQUALISER = "scrypt$16384$8$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


class Hasher:
    """scrypt in worker threads, at most ``concurrency`` at once (a semaphore): logins wait for a
    slot without holding the event loop, a database connection or more than a few cores."""

    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(hash_password, password)

    async def verify(self, password: str, stored: str | None) -> bool:
        """Checks an unknown user's password too (against a dummy hash), so timing tells nothing."""
        async with self._slots:
            ok = await asyncio.to_thread(verify_password, password, stored or _EQUALISER)
        return ok and stored is not None


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


async def user_role(conn: Conn, username: str) -> Role | None:
    cur = await conn.execute("SELECT role FROM api.users WHERE username = %s AND NOT disabled", (username,))
    row = await cur.fetchone()
    return Role(row[0]) if row else None


async def stored_hash(conn: Conn, username: str) -> str | None:
    cur = await conn.execute("SELECT password_scrypt FROM api.credentials WHERE username = %s", (username,))
    row = await cur.fetchone()
    return row[0] if row else None


REFRESH_MAX = timedelta(seconds=30)  # the idle clock is written at most this often per session


async def _session_user(conn: Conn, token: str, policy: SessionPolicy, now: datetime) -> str | None:
    """The session's user, refreshing its idle clock; an idle or too old session is deleted.

    The clock is written only once it is 30 s old (or a tenth of the idle timeout
    when that is shorter): a page's many requests (the page, its stream, its fragments) read the
    session and write nothing. A session may so end up to that much before its idle timeout."""
    digest = sha256(token)
    cur = await conn.execute(
        "SELECT username, last_used FROM api.sessions WHERE token_sha256 = %s AND last_used > %s AND created_at > %s",
        (digest, now - policy.idle, now - policy.max_age),
    )
    if row := await cur.fetchone():
        if now - row[1] >= min(REFRESH_MAX, policy.idle / 10):
            await conn.execute(
                "UPDATE api.sessions SET last_used = greatest(last_used, %s) WHERE token_sha256 = %s", (now, digest)
            )
        return str(row[0])
    gone = await conn.execute(
        "DELETE FROM api.sessions WHERE token_sha256 = %s RETURNING created_at > %s",
        (digest, now - policy.max_age),
    )
    if found := await gone.fetchone():
        if not found[0]:
            raise E.SESSION_TOO_OLD(hours=round(policy.max_age.total_seconds() / 3600, 1))
        raise E.SESSION_EXPIRED(minutes=round(policy.idle.total_seconds() / 60, 1))
    return None


async def resolve(conn: Conn, token: str, *, sessions: SessionPolicy, now: datetime) -> Principal:
    """The principal behind an API token or a session, or DPM-E401 / E406 / E412 (the bootstrap token
    is bootstrap_token.principal's)."""
    username: str | None = None
    if token.startswith(TOKEN_PREFIX):
        cur = await conn.execute(
            "SELECT username FROM api.api_tokens WHERE token_sha256 = %s AND NOT revoked", (sha256(token),)
        )
        row = await cur.fetchone()
        username = row[0] if row else None
    elif token.startswith(SESSION_PREFIX):
        username = await _session_user(conn, token, sessions, now)
    role = await user_role(conn, username) if username else None
    if username is None or role is None:
        raise E.UNAUTHENTICATED()
    return Principal(username, role)


async def open_session(conn: Conn, username: str, now: datetime) -> str:
    """A new session for a user whose password was just checked; returns its token (shown once)."""
    token = new_token(SESSION_PREFIX)
    await conn.execute(
        "INSERT INTO api.sessions (token_sha256, username, created_at, last_used) VALUES (%s, %s, %s, %s)",
        (sha256(token), username, now, now),
    )
    return token
