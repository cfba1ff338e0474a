"""The gateway's own tables: agent tokens (hashes only), spent enrolment-token uses, sessions and
presence -- command-side state, written in the transaction that decides (and appends) it. Presence
transitions are appended to the agent stream in the same transaction as the row that records them,
under a row lock, so a machine is never reported online (or offline) twice.

Revocations and issued enrolment tokens are a projection of the log (``projections.Tokens``); this
module reads them but never writes them, so a rebuild of that projection cannot undo an enrolment.
It also finds the machine an enrolment's facts name, in the machine directory (``resolve``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import NamedTuple

from dpm_agent_gateway.domain.enrolment import Found, unregistered
from dpm_agent_gateway.domain.tokens import token_hash
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.agent_protocol import Facts
from dpm_schemas.base import Event
from dpm_schemas.ids import stream_id

SCHEMA = "agent_gateway"

# From the tables a consumer kept (revocations and issued tokens mixed into these): the spent uses
# move over, placeholder rows of revoked machines without a token go (the projection replays every
# revocation), a revoked token's position is reset below its revocation's so it stays refused, and a
# token not revoked now but set before positions were kept (0) is dated at the log's head, so the
# replayed revocations it outlived do not refuse it.
UPGRADE = [
    f"ALTER TABLE IF EXISTS {SCHEMA}.agent_tokens ADD COLUMN IF NOT EXISTS position bigint NOT NULL DEFAULT 0",
    "DO $$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'agent_gateway'"
    " AND table_name = 'agent_tokens' AND column_name = 'revoked') THEN"
    f" DELETE FROM {SCHEMA}.agent_tokens WHERE token_sha256 IS NULL;"
    f" UPDATE {SCHEMA}.agent_tokens SET position = 0 WHERE revoked;"
    f" UPDATE {SCHEMA}.agent_tokens SET position = (SELECT coalesce(max(position), 0) FROM events)"
    " WHERE NOT revoked AND position = 0;"
    f" ALTER TABLE {SCHEMA}.agent_tokens DROP COLUMN revoked;"
    f" ALTER TABLE {SCHEMA}.agent_tokens ALTER COLUMN token_sha256 SET NOT NULL; END IF;"
    f" IF to_regclass('{SCHEMA}.enrolment_tokens') IS NOT NULL THEN"
    f" INSERT INTO {SCHEMA}.enrolment_token_uses (token_sha256, uses_left)"
    f" SELECT token_sha256, uses_left FROM {SCHEMA}.enrolment_tokens ON CONFLICT DO NOTHING;"
    f" DROP TABLE {SCHEMA}.enrolment_tokens; END IF; END $$",
]

DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    # position: the AgentEnrolled that set the token; a revocation at a later position refuses it
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.agent_tokens (machine_id uuid PRIMARY KEY, token_sha256 text NOT NULL,"
    " position bigint NOT NULL DEFAULT 0)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS agent_tokens_hash ON {SCHEMA}.agent_tokens (token_sha256)",
    # the uses an enrolment token has left, from its first use on (its issue is in the projection)
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.enrolment_token_uses (token_sha256 text PRIMARY KEY,"
    " uses_left integer NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.presence (machine_id uuid PRIMARY KEY, online boolean NOT NULL,"
    " agent_version text NOT NULL DEFAULT '', ips text[] NOT NULL DEFAULT '{}',"
    " inventory_digest text NOT NULL DEFAULT '')",
    # last heard from, by any replica (database clock): what the sweep of every replica goes by
    f"ALTER TABLE {SCHEMA}.presence ADD COLUMN IF NOT EXISTS last_seen timestamptz NOT NULL DEFAULT now()",
    *UPGRADE,
    # the one live session per machine (= per token): the newest hello wins on every replica
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.agent_sessions (machine_id uuid PRIMARY KEY, session_id uuid NOT NULL,"
    " opened_at timestamptz NOT NULL DEFAULT now())",
]


# a token is revoked while its machine's last revocation is newer than the enrolment that set it
_REVOKED = (
    f"EXISTS (SELECT 1 FROM {SCHEMA}.agent_revocations r WHERE r.machine_id = t.machine_id AND r.position > t.position)"
)


_MATCHES = "NOT deleted AND (macs && %s OR (smbios_uuid IS NOT NULL AND smbios_uuid = %s))"


async def resolve(conn: Conn, facts: Facts, prefer: uuid.UUID | None = None) -> Found:
    """The registered machine owning any of these MACs or this SMBIOS UUID (``prefer`` first, then the
    oldest); else the natural key of an unregistered machine."""
    cur = await conn.execute(
        f"SELECT machine_id, name FROM {SCHEMA}.machine_directory WHERE {_MATCHES}"
        " ORDER BY machine_id = %s DESC, position LIMIT 1",
        (list(facts.macs), facts.smbios_uuid, prefer),
    )
    row = await cur.fetchone()
    return Found(row[0], row[1]) if row else unregistered(facts)


async def machine_for_token(conn: Conn, token: str) -> uuid.UUID | None:
    cur = await conn.execute(
        f"SELECT machine_id FROM {SCHEMA}.agent_tokens t WHERE token_sha256 = %s AND NOT {_REVOKED}",
        (token_hash(token),),
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def claim_token(conn: Conn, machine_id: uuid.UUID, digest: str) -> bool | None:
    """Give a machine that never had an agent token (nor a revocation) its first: None when done;
    else whether the machine is revoked (and nothing changed). Atomic against a concurrent claim."""
    cur = await conn.execute(
        f"INSERT INTO {SCHEMA}.agent_tokens (machine_id, token_sha256) SELECT %s, %s WHERE NOT EXISTS"
        f" (SELECT 1 FROM {SCHEMA}.agent_revocations WHERE machine_id = %s) ON CONFLICT (machine_id) DO NOTHING"
        " RETURNING 1",
        (machine_id, digest, machine_id),
    )
    if await cur.fetchone() is not None:
        return None
    row = await (
        await conn.execute(
            f"SELECT coalesce((SELECT position FROM {SCHEMA}.agent_revocations WHERE machine_id = %s), -1)"
            f" > coalesce((SELECT position FROM {SCHEMA}.agent_tokens WHERE machine_id = %s), -1)",
            (machine_id, machine_id),
        )
    ).fetchone()
    return bool(row and row[0])


async def replace_token(conn: Conn, machine_id: uuid.UUID, digest: str) -> bool:
    """An admin-bound enrolment: set the machine's token; True if one was replaced. Its AgentEnrolled
    comes after every revocation so far (``enrolled_at``), which lifts them."""
    cur = await conn.execute(f"SELECT 1 FROM {SCHEMA}.agent_tokens WHERE machine_id = %s FOR UPDATE", (machine_id,))
    row = await cur.fetchone()
    await conn.execute(
        f"INSERT INTO {SCHEMA}.agent_tokens (machine_id, token_sha256) VALUES (%s, %s) ON CONFLICT (machine_id)"
        " DO UPDATE SET token_sha256 = excluded.token_sha256",
        (machine_id, digest),
    )
    return row is not None


async def enrolled_at(conn: Conn, machine_id: uuid.UUID, position: int) -> None:
    """The position of the AgentEnrolled that set the machine's token (revocations before it are lifted)."""
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
        f"SELECT t.machine_id, t.token_sha256, {_REVOKED}, s.session_id FROM {SCHEMA}.agent_tokens t"
        f" LEFT JOIN {SCHEMA}.agent_sessions s USING (machine_id) WHERE t.machine_id = ANY(%s)",
        (machine_ids,),
    )
    return {r[0]: (r[1], bool(r[2]), r[3]) for r in await cur.fetchall()}


class PresenceRow(NamedTuple):
    online: bool
    ips: list[str]
    inventory_digest: str
    agent_version: str


async def locked_presence(conn: Conn, machine_id: uuid.UUID) -> PresenceRow:
    """The machine's presence row, locked for this transaction (created if absent)."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.presence (machine_id, online) VALUES (%s, false) ON CONFLICT DO NOTHING", (machine_id,)
    )
    cur = await conn.execute(
        f"SELECT online, ips, inventory_digest, agent_version FROM {SCHEMA}.presence WHERE machine_id = %s FOR UPDATE",
        (machine_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return PresenceRow(bool(row[0]), list(row[1]), str(row[2]), str(row[3]))


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


async def lock_silent(conn: Conn, timeout: timedelta, heard: list[uuid.UUID]) -> list[uuid.UUID]:
    """Online machines nobody heard from within ``timeout``, apart from ``heard`` (heard from but not
    yet flushed), locked (rows another replica is sweeping are skipped, so a transition is recorded once)."""
    cur = await conn.execute(
        f"SELECT machine_id FROM {SCHEMA}.presence WHERE online AND last_seen < now() - %s"
        " AND NOT machine_id = ANY(%s) ORDER BY machine_id FOR UPDATE SKIP LOCKED",
        (timeout, heard),
    )
    return [r[0] for r in await cur.fetchall()]


async def touch_online(conn: Conn) -> None:
    await conn.execute(f"UPDATE {SCHEMA}.presence SET last_seen = now() WHERE online AND last_seen < now()")


async def use_enrolment_token(conn: Conn, token: str) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """Spend one use of an issued enrolment token, atomically (a refused enrolment rolls it back):
    (token id, the machine it is bound to or None); None if unknown, used up or expired."""
    digest = token_hash(token)
    cur = await conn.execute(
        f"SELECT token_id, machine_id, uses FROM {SCHEMA}.issued_enrolment_tokens"
        " WHERE token_sha256 = %s AND expires_at > now()",
        (digest,),
    )
    issued = await cur.fetchone()
    if issued is None or issued[2] < 1:
        return None
    cur = await conn.execute(
        f"INSERT INTO {SCHEMA}.enrolment_token_uses AS u (token_sha256, uses_left) VALUES (%s, %s)"
        " ON CONFLICT (token_sha256) DO UPDATE SET uses_left = u.uses_left - 1 WHERE u.uses_left > 0 RETURNING 1",
        (digest, issued[2] - 1),
    )
    return (issued[0], issued[1]) if await cur.fetchone() else None
