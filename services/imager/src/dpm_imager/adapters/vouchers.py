"""Chunks a backup transfer may name (DPM-E119): written by the data plane as it goes -- a guard of
the write side, like a unique index, not a read model -- and dropped when the transfer ends.

A manifest may name only chunks its transfer uploaded, or that its ``missing`` call reported
present. That keeps dedup and resume (an unchanged re-backup uploads nothing, but asks about every
chunk) and stops a client from naming chunks it never showed it has. Chunk ids are BLAKE3 of the
content, so asking about an id is a claim to hold that content; the ids of other machines' images
are never shown to a backup token.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from uuid import UUID

from dpm_runtime.eventlog import Conn

SCHEMA = "imager"

DDL = [
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.vouched (transfer_id uuid NOT NULL, chunk bytea NOT NULL,"
    " PRIMARY KEY (transfer_id, chunk))",
    # The compressed bytes this transfer added to the store (0: it found the chunk there). Kept here,
    # not in the process, so a commit after an imager restart still counts what came before it.
    f"ALTER TABLE {SCHEMA}.vouched ADD COLUMN IF NOT EXISTS stored bigint NOT NULL DEFAULT 0",
]


async def vouch(conn: Conn, transfer_id: UUID, chunks: Iterable[str]) -> None:
    """This transfer may name these chunks: it uploaded them, or asked and found them stored."""
    raw = [binascii.unhexlify(c) for c in chunks]
    if raw:
        await conn.execute(
            f"INSERT INTO {SCHEMA}.vouched (transfer_id, chunk) SELECT %s, unnest(%s::bytea[]) ON CONFLICT DO NOTHING",
            (transfer_id, raw),
        )


async def vouch_stored(conn: Conn, transfer_id: UUID, stored: dict[str, int]) -> None:
    """This transfer uploaded these chunks, adding ``stored[cid]`` compressed bytes each to the store."""
    if stored:
        await conn.execute(
            f"INSERT INTO {SCHEMA}.vouched (transfer_id, chunk, stored)"
            " SELECT %s, unnest(%s::bytea[]), unnest(%s::bigint[])"
            " ON CONFLICT (transfer_id, chunk) DO UPDATE SET stored = greatest(vouched.stored, excluded.stored)",
            (transfer_id, [binascii.unhexlify(c) for c in stored], list(stored.values())),
        )


async def stored_bytes(conn: Conn, transfer_id: UUID) -> int:
    """What this transfer added to the store, whichever imager process received it."""
    sql = f"SELECT coalesce(sum(stored), 0) FROM {SCHEMA}.vouched WHERE transfer_id = %s"
    row = await (await conn.execute(sql, (transfer_id,))).fetchone()
    return int(row[0]) if row else 0


async def unvouched(conn: Conn, transfer_id: UUID, chunks: frozenset[str]) -> list[str]:
    """The chunks of ``chunks`` this transfer never uploaded nor asked about, sorted."""
    rows = await (
        await conn.execute(
            f"SELECT chunk FROM {SCHEMA}.vouched WHERE transfer_id = %s AND chunk = ANY(%s::bytea[])",
            (transfer_id, [binascii.unhexlify(c) for c in chunks]),
        )
    ).fetchall()
    seen = {bytes(r[0]).hex() for r in rows}
    return sorted(chunks - seen)


async def forget(conn: Conn, transfer_id: UUID) -> None:
    await conn.execute(f"DELETE FROM {SCHEMA}.vouched WHERE transfer_id = %s", (transfer_id,))


_HELD = "t.state = 'open' AND t.expires_at >= now()"


async def held(conn: Conn) -> set[str]:
    """The chunks open backups may still name: the collector keeps them whatever their age (a
    backup longer than the grace period used to lose its first chunks before it committed)."""
    return await _chunks(conn, _HELD)


async def ended(conn: Conn, *, grace: float | None) -> tuple[set[UUID], set[str]]:
    """Transfers that still have vouchers but hold nothing (committed, aborted or expired) -- with
    ``grace``, only those committed or past their deadline by ``grace`` seconds -- and the chunks the
    aborted or expired ones among them uploaded or asked about. The collector removes those no image
    names at once (under pressure, or asked to) and then forgets these vouchers."""
    sql = (
        f"SELECT v.transfer_id, t.state, v.chunk FROM {SCHEMA}.vouched v JOIN {SCHEMA}.transfers t"
        f" USING (transfer_id) WHERE NOT ({_HELD})"
    )
    if grace is not None:
        sql += " AND (t.state = 'committed' OR t.expires_at < now() - make_interval(secs => %s))"
    rows = await (await conn.execute(sql, () if grace is None else (grace,))).fetchall()
    return {r[0] for r in rows}, {bytes(r[2]).hex() for r in rows if r[1] != "committed"}


async def _chunks(conn: Conn, where: str) -> set[str]:
    rows = await (
        await conn.execute(
            f"SELECT DISTINCT v.chunk FROM {SCHEMA}.vouched v JOIN {SCHEMA}.transfers t USING (transfer_id)"
            f" WHERE {where}"
        )
    ).fetchall()
    return {bytes(r[0]).hex() for r in rows}


async def forget_all(conn: Conn, transfer_ids: set[UUID]) -> None:
    if transfer_ids:
        await conn.execute(f"DELETE FROM {SCHEMA}.vouched WHERE transfer_id = ANY(%s)", (list(transfer_ids),))
