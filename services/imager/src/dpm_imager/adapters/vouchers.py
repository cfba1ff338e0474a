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
]


async def vouch(conn: Conn, transfer_id: UUID, chunks: Iterable[str]) -> None:
    """This transfer may name these chunks: it uploaded them, or asked and found them stored."""
    raw = [binascii.unhexlify(c) for c in chunks]
    if raw:
        await conn.execute(
            f"INSERT INTO {SCHEMA}.vouched (transfer_id, chunk) SELECT %s, unnest(%s::bytea[]) ON CONFLICT DO NOTHING",
            (transfer_id, raw),
        )


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


async def forget_ended(conn: Conn) -> None:
    """The vouchers of transfers that ended or expired without a commit or abort reaching us."""
    await conn.execute(
        f"DELETE FROM {SCHEMA}.vouched v USING {SCHEMA}.transfers t WHERE t.transfer_id = v.transfer_id"
        " AND (t.state <> 'open' OR t.expires_at < now())"
    )
