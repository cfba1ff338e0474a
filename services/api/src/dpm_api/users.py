"""User and token changes: events on the user stream plus, for passwords, the credentials table --
in one transaction. Password hashes are computed by the caller (off the event loop, auth.Hasher)
before the transaction opens."""

from __future__ import annotations

import uuid

from dpm_api import auth
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import ANY_VERSION, NO_STREAM, Conn, EventLog, StreamConflict
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.base import Event
from dpm_schemas.events import (
    ApiTokenIssued,
    ApiTokenRevoked,
    UserCreated,
    UserDisabled,
    UserLoggedIn,
    UserPasswordChanged,
    UserRoleChanged,
)
from dpm_schemas.events.users import Role
from dpm_schemas.ids import stream_id


async def _append(
    log: EventLog, conn: Conn, username: str, event: Event, actor: str, expected: int | None = ANY_VERSION
) -> int:
    result = await log.append(
        stream_id(subjects.USER, username), expected, [NewEvent(event, command_metadata(actor))], conn=conn
    )
    return result.position


async def _exists(conn: Conn, username: str) -> None:
    cur = await conn.execute("SELECT 1 FROM api.users WHERE username = %s", (username,))
    if await cur.fetchone() is None:
        raise E.USER_NOT_FOUND(username=username)


async def create(log: EventLog, conn: Conn, username: str, password_hash: str, role: Role, *, actor: str) -> int:
    try:
        position = await _append(log, conn, username, UserCreated(username=username, role=role), actor, NO_STREAM)
    except StreamConflict:
        raise E.USER_EXISTS(username=username) from None
    await conn.execute(
        "INSERT INTO api.credentials (username, password_scrypt) VALUES (%s, %s)", (username, password_hash)
    )
    return position


async def change_role(log: EventLog, conn: Conn, username: str, role: Role, *, actor: str) -> int:
    await _exists(conn, username)
    return await _append(log, conn, username, UserRoleChanged(username=username, role=role), actor)


async def change_password(log: EventLog, conn: Conn, username: str, password_hash: str, *, actor: str) -> int:
    """The new hash in place; every session of the user ends and every API token is revoked
    (ApiTokenRevoked each): whoever knew the old password may have made them."""
    await _exists(conn, username)
    await conn.execute("UPDATE api.credentials SET password_scrypt = %s WHERE username = %s", (password_hash, username))
    await conn.execute("DELETE FROM api.sessions WHERE username = %s", (username,))
    position = await _append(log, conn, username, UserPasswordChanged(username=username), actor)
    cur = await conn.execute("SELECT token_id FROM api.api_tokens WHERE username = %s AND NOT revoked", (username,))
    for (token_id,) in await cur.fetchall():
        position = await _append(log, conn, username, ApiTokenRevoked(token_id=token_id, username=username), actor)
    return position


async def disable(log: EventLog, conn: Conn, username: str, *, actor: str) -> int:
    await _exists(conn, username)
    await conn.execute("DELETE FROM api.sessions WHERE username = %s", (username,))
    return await _append(log, conn, username, UserDisabled(username=username), actor)


async def logged_in(log: EventLog, conn: Conn, username: str) -> int:
    return await _append(log, conn, username, UserLoggedIn(username=username), username)


async def issue_token(log: EventLog, conn: Conn, username: str, name: str) -> tuple[uuid.UUID, str, int]:
    token_id, token = uuid.uuid4(), auth.new_token(auth.TOKEN_PREFIX)
    event = ApiTokenIssued(token_id=token_id, username=username, name=name, token_sha256=auth.sha256(token))
    return token_id, token, await _append(log, conn, username, event, username)


async def revoke_token(log: EventLog, conn: Conn, token_id: uuid.UUID, who: auth.Principal) -> int:
    cur = await conn.execute("SELECT username FROM api.api_tokens WHERE token_id = %s AND NOT revoked", (token_id,))
    row = await cur.fetchone()
    if row is None or (row[0] != who.username and who.role is not Role.ADMIN):
        raise E.INVALID_REQUEST(reason=f"no valid token {token_id} of yours")
    return await _append(log, conn, row[0], ApiTokenRevoked(token_id=token_id, username=row[0]), who.username)
