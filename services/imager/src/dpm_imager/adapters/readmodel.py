"""Queries of the imager's read models (projections.py): the transfer of a token, the open
transfers of an execution, the manifest an image points to, and every live manifest."""

from __future__ import annotations

from uuid import UUID

from dpm_imager.domain.transfers import Transfer
from dpm_imager.projections import SCHEMA
from dpm_runtime.eventlog import Conn

_COLUMNS = "transfer_id, image_id, image, direction, expires_at, machine_id, execution_id, state, renew_seconds, reason"


async def transfer_by_token(conn: Conn, token_sha256: str, transfer_id: UUID) -> Transfer | None:
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM {SCHEMA}.transfers WHERE token_sha256 = %s AND transfer_id = %s",
            (token_sha256, transfer_id),
        )
    ).fetchone()
    return Transfer(*row) if row else None


async def open_transfers_of(conn: Conn, execution_id: UUID) -> list[Transfer]:
    rows = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM {SCHEMA}.transfers WHERE execution_id = %s AND state = 'open'", (execution_id,)
        )
    ).fetchall()
    return [Transfer(*r) for r in rows]


async def current_manifest(conn: Conn, image_id: UUID) -> str | None:
    row = await (
        await conn.execute(f"SELECT manifest FROM {SCHEMA}.images WHERE image_id = %s", (image_id,))
    ).fetchone()
    return str(row[0]) if row else None


async def live_manifests(conn: Conn) -> list[str]:
    rows = await (await conn.execute(f"SELECT manifest FROM {SCHEMA}.images")).fetchall()
    return [str(r[0]) for r in rows]
