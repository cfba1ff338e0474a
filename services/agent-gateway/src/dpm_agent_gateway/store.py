"""The gateway's own tables: agent tokens (hashes only) and presence. Transitions are appended to the
agent stream in the same transaction as the row that records them, under a row lock, so a machine
is never reported online (or offline) twice."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.base import Event
from dpm_schemas.ids import stream_id

SCHEMA = "agent_gateway"

DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.agent_tokens (machine_id uuid PRIMARY KEY, token_sha256 text NOT NULL,"
    " revoked boolean NOT NULL DEFAULT false)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS agent_tokens_hash ON {SCHEMA}.agent_tokens (token_sha256)",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.enrolment_tokens (token_sha256 text PRIMARY KEY, token_id uuid NOT NULL,"
    " expires_at timestamptz NOT NULL, uses_left integer NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.presence (machine_id uuid PRIMARY KEY, online boolean NOT NULL,"
    " agent_version text NOT NULL DEFAULT '', ips text[] NOT NULL DEFAULT '{}',"
    " inventory_digest text NOT NULL DEFAULT '')",
    # last heard from, by any replica (database clock): what the sweep of every replica goes by
    f"ALTER TABLE {SCHEMA}.presence ADD COLUMN IF NOT EXISTS last_seen timestamptz NOT NULL DEFAULT now()",
    # an enrolment token bound to one machine (NULL: unbound); a revoked machine that never had a token
    # keeps a row without one, so an unbound enrolment cannot claim it either
    f"ALTER TABLE {SCHEMA}.enrolment_tokens ADD COLUMN IF NOT EXISTS machine_id uuid",
    f"ALTER TABLE {SCHEMA}.agent_tokens ALTER COLUMN token_sha256 DROP NOT NULL",
    # log position of the enrolment or revocation the row reflects: a revocation older than the
    # bound re-enrolment that lifted it (a lagging or redelivered AgentTokenRevoked) changes nothing
    f"ALTER TABLE {SCHEMA}.agent_tokens ADD COLUMN IF NOT EXISTS position bigint NOT NULL DEFAULT 0",
    # the one live session per machine (= per token): the newest hello wins on every replica
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.agent_sessions (machine_id uuid PRIMARY KEY, session_id uuid NOT NULL,"
    " opened_at timestamptz NOT NULL DEFAULT now())",
]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def machine_for_token(conn: Conn, token: str) -> uuid.UUID | None:
    cur = await conn.execute(
        f"SELECT machine_id FROM {SCHEMA}.agent_tokens WHERE token_sha256 = %s AND NOT revoked", (token_hash(token),)
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def claim_token(conn: Conn, machine_id: uuid.UUID, digest: str) -> bool | None:
    """Give a machine that never had an agent token (nor a revocation) its first: None when done;
    else whether the existing row is revoked (and nothing changed). Atomic against a concurrent claim."""
    cur = await conn.execute(
        f"INSERT INTO {SCHEMA}.agent_tokens (machine_id, token_sha256) VALUES (%s, %s)"
        " ON CONFLICT (machine_id) DO NOTHING RETURNING 1",
        (machine_id, digest),
    )
    if await cur.fetchone() is not None:
        return None
    row = await (
        await conn.execute(f"SELECT revoked FROM {SCHEMA}.agent_tokens WHERE machine_id = %s", (machine_id,))
    ).fetchone()
    return bool(row[0]) if row else False


async def replace_token(conn: Conn, machine_id: uuid.UUID, digest: str) -> bool:
    """An admin-bound enrolment: set the machine's token (undoing a revocation); True if one was replaced."""
    cur = await conn.execute(
        f"SELECT token_sha256 IS NOT NULL FROM {SCHEMA}.agent_tokens WHERE machine_id = %s FOR UPDATE", (machine_id,)
    )
    row = await cur.fetchone()
    await conn.execute(
        f"INSERT INTO {SCHEMA}.agent_tokens (machine_id, token_sha256) VALUES (%s, %s) ON CONFLICT (machine_id)"
        " DO UPDATE SET token_sha256 = excluded.token_sha256, revoked = false",
        (machine_id, digest),
    )
    return bool(row and row[0])


async def revoke(conn: Conn, machine_id: uuid.UUID, position: int) -> None:
    """Revoked, with or without a token so far: only a later bound enrolment lifts it."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.agent_tokens AS t (machine_id, token_sha256, revoked, position)"
        " VALUES (%s, NULL, true, %s) ON CONFLICT (machine_id) DO UPDATE SET revoked = true,"
        " position = excluded.position WHERE t.position < excluded.position",
        (machine_id, position),
    )


async def enrolled_at(conn: Conn, machine_id: uuid.UUID, position: int) -> None:
    await conn.execute(f"UPDATE {SCHEMA}.agent_tokens SET position = %s WHERE machine_id = %s", (position, machine_id))


async def open_session(conn: Conn, machine_id: uuid.UUID, session_id: uuid.UUID) -> None:
    await conn.execute(
        f"INSERT INTO {SCHEMA}.agent_sessions (machine_id, session_id) VALUES (%s, %s) ON CONFLICT (machine_id)"
        " DO UPDATE SET session_id = excluded.session_id, opened_at = now()",
        (machine_id, session_id),
    )


async def session_truth(
    conn: Conn, machine_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str | None, bool, uuid.UUID | None]]:
    """Per machine: (current token hash, revoked, newest session id) -- what held sessions are checked by."""
    cur = await conn.execute(
        f"SELECT t.machine_id, t.token_sha256, t.revoked, s.session_id FROM {SCHEMA}.agent_tokens t"
        f" LEFT JOIN {SCHEMA}.agent_sessions s USING (machine_id) WHERE t.machine_id = ANY(%s)",
        (machine_ids,),
    )
    return {r[0]: (r[1], bool(r[2]), r[3]) for r in await cur.fetchall()}


async def locked_presence(conn: Conn, machine_id: uuid.UUID) -> tuple[bool, list[str], str]:
    """(online, ips, inventory digest), the row locked for this transaction (created if absent)."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.presence (machine_id, online) VALUES (%s, false) ON CONFLICT DO NOTHING", (machine_id,)
    )
    cur = await conn.execute(
        f"SELECT online, ips, inventory_digest FROM {SCHEMA}.presence WHERE machine_id = %s FOR UPDATE", (machine_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0]), list(row[1]), str(row[2])


async def record(log: EventLog, conn: Conn, machine_id: uuid.UUID, event: Event, **columns: object) -> None:
    """Append ``event`` to the agent stream and update the presence row, in the caller's transaction."""
    sets = ", ".join(f"{name} = %s" for name in columns)
    await conn.execute(f"UPDATE {SCHEMA}.presence SET {sets} WHERE machine_id = %s", (*columns.values(), machine_id))
    await log.append(
        stream_id(subjects.AGENT, machine_id),
        ANY_VERSION,
        [NewEvent(event, Metadata.new(actor="agent-gateway"))],
        conn=conn,
    )


async def seen(conn: Conn, machine_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Record that these machines were heard from now; returns those the shared row shows offline."""
    cur = await conn.execute(
        f"UPDATE {SCHEMA}.presence SET last_seen = now() WHERE machine_id = ANY(%s) RETURNING machine_id, online",
        (machine_ids,),
    )
    return [r[0] for r in await cur.fetchall() if not r[1]]


async def lock_silent(conn: Conn, timeout: timedelta) -> list[uuid.UUID]:
    """Online machines nobody heard from within ``timeout``, locked (rows another replica is
    sweeping are skipped, so a transition is recorded once)."""
    cur = await conn.execute(
        f"SELECT machine_id FROM {SCHEMA}.presence WHERE online AND last_seen < now() - %s"
        " ORDER BY machine_id FOR UPDATE SKIP LOCKED",
        (timeout,),
    )
    return [r[0] for r in await cur.fetchall()]


async def touch_online(conn: Conn) -> None:
    await conn.execute(f"UPDATE {SCHEMA}.presence SET last_seen = now() WHERE online AND last_seen < now()")


async def save_enrolment_token(
    conn: Conn, token_id: uuid.UUID, digest: str, expires_at: object, uses: int, machine_id: uuid.UUID | None
) -> None:
    await conn.execute(
        f"INSERT INTO {SCHEMA}.enrolment_tokens (token_sha256, token_id, expires_at, uses_left, machine_id)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (digest, token_id, expires_at, uses, machine_id),
    )


async def use_enrolment_token(conn: Conn, token: str) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """Spend one use of an issued enrolment token, atomically (a refused enrolment rolls it back):
    (token id, the machine it is bound to or None); None if unknown, used up or expired."""
    cur = await conn.execute(
        f"UPDATE {SCHEMA}.enrolment_tokens SET uses_left = uses_left - 1"
        " WHERE token_sha256 = %s AND uses_left > 0 AND expires_at > now() RETURNING token_id, machine_id",
        (token_hash(token),),
    )
    row = await cur.fetchone()
    return (row[0], row[1]) if row else None
