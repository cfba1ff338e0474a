"""The imager's read models: transfers (whose tokens the data plane checks) and images (the
manifest each name points to now). Projections of the log, so a restarted or second imager knows
every open transfer, and a fresh one rebuilds them. Their queries are in adapters/readmodel.py."""

from __future__ import annotations

from collections.abc import Sequence

from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import ImageCaptured, ImageDeleted, TransferAborted, TransferOpened, TransferRenewed

SCHEMA = "imager"


class Transfers:
    name = "transfers"
    schema = SCHEMA
    tables = ("transfers",)
    event_types = (
        TransferOpened.wire_name,
        TransferRenewed.wire_name,
        ImageCaptured.wire_name,
        TransferAborted.wire_name,
    )

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".transfers (transfer_id uuid PRIMARY KEY,'
            " token_sha256 text NOT NULL UNIQUE, image_id uuid NOT NULL, image text NOT NULL,"
            " direction text NOT NULL, expires_at timestamptz NOT NULL, machine_id uuid, execution_id uuid,"
            " state text NOT NULL DEFAULT 'open');"
            f'ALTER TABLE "{schema}".transfers ADD COLUMN IF NOT EXISTS renew_seconds double precision;'
            f'ALTER TABLE "{schema}".transfers ADD COLUMN IF NOT EXISTS reason text;'
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            if isinstance(e, TransferOpened):
                await conn.execute(
                    f'INSERT INTO "{schema}".transfers (transfer_id, token_sha256, image_id, image, direction,'
                    " expires_at, machine_id, execution_id, renew_seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (transfer_id) DO NOTHING",
                    (
                        e.transfer_id,
                        e.token_sha256,
                        e.image_id,
                        e.image,
                        e.direction.value,
                        e.expires_at,
                        e.machine_id,
                        e.execution_id,
                        e.renew_seconds,
                    ),
                )
            elif isinstance(e, TransferRenewed):
                await conn.execute(
                    f'UPDATE "{schema}".transfers SET expires_at = greatest(expires_at, %s) WHERE transfer_id = %s',
                    (e.expires_at, e.transfer_id),
                )
            elif isinstance(e, ImageCaptured | TransferAborted):
                state = "committed" if isinstance(e, ImageCaptured) else "aborted"
                reason = e.reason if isinstance(e, TransferAborted) else None
                await conn.execute(
                    f'UPDATE "{schema}".transfers SET state = %s, reason = %s WHERE transfer_id = %s',
                    (state, reason, e.transfer_id),
                )


class Images:
    name = "stored_images"  # unique across services: the checkpoint is "projection:<name>"
    schema = SCHEMA
    tables = ("images",)
    event_types = (ImageCaptured.wire_name, ImageDeleted.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".images (image_id uuid PRIMARY KEY, image text NOT NULL,'
            " manifest text NOT NULL, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            if isinstance(e, ImageCaptured):
                await conn.execute(
                    f'INSERT INTO "{schema}".images (image_id, image, manifest, position) VALUES (%s, %s, %s, %s)'
                    " ON CONFLICT (image_id) DO UPDATE SET manifest = excluded.manifest, position = excluded.position"
                    f' WHERE "{schema}".images.position < excluded.position',
                    (e.image_id, e.image, e.manifest, rec.position),
                )
            elif isinstance(e, ImageDeleted):
                await conn.execute(
                    f'DELETE FROM "{schema}".images WHERE image_id = %s AND position < %s', (e.image_id, rec.position)
                )
