"""The updater's read model of uploads (whose tokens its data plane checks): a projection of the
log, so a restarted or second updater knows every open upload and a fresh one rebuilds it."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import PackageContentStored, PackageUploadAborted, PackageUploadOpened
from dpm_updater.domain.uploads import Upload

SCHEMA = "updater"


class Uploads:
    name = "package_uploads"  # unique across services: the checkpoint is "projection:<name>"
    schema = SCHEMA
    tables = ("uploads",)
    event_types = (PackageUploadOpened.wire_name, PackageContentStored.wire_name, PackageUploadAborted.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".uploads (upload_id uuid PRIMARY KEY,'
            " token_sha256 text NOT NULL UNIQUE, size bigint NOT NULL, sha256 text, expires_at timestamptz NOT NULL,"
            " state text NOT NULL DEFAULT 'open', stored_sha256 text);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        t = f'"{schema}".uploads'
        for rec in events:
            e = rec.event
            if isinstance(e, PackageUploadOpened):
                await conn.execute(
                    f"INSERT INTO {t} (upload_id, token_sha256, size, sha256, expires_at) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (upload_id) DO NOTHING",
                    (e.upload_id, e.token_sha256, e.size, e.sha256, e.expires_at),
                )
            elif isinstance(e, PackageContentStored):
                await conn.execute(
                    f"UPDATE {t} SET state = 'stored', stored_sha256 = %s WHERE upload_id = %s", (e.sha256, e.upload_id)
                )
            elif isinstance(e, PackageUploadAborted):
                await conn.execute(f"UPDATE {t} SET state = 'aborted' WHERE upload_id = %s", (e.upload_id,))


async def upload_by_token(conn: Conn, token_sha256: str, upload_id: UUID) -> Upload | None:
    row = await (
        await conn.execute(
            f"SELECT upload_id, size, sha256, expires_at, state, stored_sha256 FROM {SCHEMA}.uploads"
            " WHERE token_sha256 = %s AND upload_id = %s",
            (token_sha256, upload_id),
        )
    ).fetchone()
    return Upload(*row) if row else None
