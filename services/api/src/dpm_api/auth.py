"""Who is calling: the bootstrap token, an API token (``dpmt_...``), or a login session (``dpms_...``),
each resolved to a user and a role. Passwords are scrypt hashes in ``api.credentials`` -- never in the
event log or on the bus; sessions live in ``api.sessions`` and expire after an idle period."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

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


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


async def user_role(conn: Conn, username: str) -> Role | None:
    cur = await conn.execute("SELECT role FROM api.users WHERE username = %s AND NOT disabled", (username,))
    row = await cur.fetchone()
    return Role(row[0]) if row else None


async def resolve(conn: Conn, token: str, *, bootstrap: str | None, idle: timedelta) -> Principal:
    """The principal behind a bearer token, or DPM-E401 / DPM-E406."""
    if bootstrap is not None and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return Principal(BOOTSTRAP_USER, Role.ADMIN)
    username: str | None = None
    if token.startswith(TOKEN_PREFIX):
        cur = await conn.execute(
            "SELECT username FROM api.api_tokens WHERE token_sha256 = %s AND NOT revoked", (sha256(token),)
        )
        row = await cur.fetchone()
        username = row[0] if row else None
    elif token.startswith(SESSION_PREFIX):
        cur = await conn.execute(
            "UPDATE api.sessions SET last_used = now() WHERE token_sha256 = %s AND last_used > now() - %s"
            " RETURNING username",
            (sha256(token), idle),
        )
        row = await cur.fetchone()
        if row is None:
            gone = await conn.execute("DELETE FROM api.sessions WHERE token_sha256 = %s RETURNING 1", (sha256(token),))
            if await gone.fetchone():
                raise E.SESSION_EXPIRED(minutes=round(idle.total_seconds() / 60, 1))
        username = row[0] if row else None
    role = await user_role(conn, username) if username else None
    if username is None or role is None:
        raise E.UNAUTHENTICATED()
    return Principal(username, role)


async def login(conn: Conn, username: str, password: str) -> str:
    """Check the password and open a session; returns the session token (shown once)."""
    cur = await conn.execute("SELECT password_scrypt FROM api.credentials WHERE username = %s", (username,))
    row = await cur.fetchone()
    ok = verify_password(password, row[0] if row else hash_password("timing-equaliser"))
    if not ok or row is None or await user_role(conn, username) is None:
        raise E.LOGIN_FAILED()
    token = new_token(SESSION_PREFIX)
    await conn.execute("INSERT INTO api.sessions (token_sha256, username) VALUES (%s, %s)", (sha256(token), username))
    return token
