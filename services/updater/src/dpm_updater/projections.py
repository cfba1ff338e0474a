"""The updater's read models, projections of the log (a restarted or second updater knows every
open upload and delivery, a fresh one rebuilds them): uploads and deliveries, whose tokens its data
plane checks, and its own copies of the package catalogue and the machines' inventories
(``dpm_runtime.catalog``), which its remote-update steps judge."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from dpm_packages import Inventory, from_reported
from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    AgentCommandCompleted,
    AutoUpdateEnded,
    AutoUpdateTimeSet,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionSuspended,
    FileTransferGranted,
    PackageContentStored,
    PackageDeliveryGranted,
    PackageInstallReported,
    PackageUploadAborted,
    PackageUploadOpened,
)
from dpm_schemas.packages import Package
from dpm_updater.domain.delivery import Grant, Stored
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


class Deliveries:
    """The deliveries whose tokens the data plane checks (content downloads, reports): granted by the
    updater's own handlers, ended with their execution (a remote-update step) or their final report
    (an auto-update); and the api's grants of one file to an operator's put_file, ended with the
    command. ``auto_updates``: what each automatic delivery brought each machine, so a package is
    pushed to a machine once per revision (again only by "notify now" after a failure)."""

    name = "deliveries"
    schema = SCHEMA
    tables = ("deliveries", "auto_updates")
    event_types = (
        PackageDeliveryGranted.wire_name,
        PackageInstallReported.wire_name,
        AutoUpdateEnded.wire_name,
        FileTransferGranted.wire_name,
        AgentCommandCompleted.wire_name,
        ExecutionCompleted.wire_name,
        ExecutionFailed.wire_name,
        ExecutionSuspended.wire_name,
    )

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".deliveries (token_sha256 text PRIMARY KEY,'
            " execution_id uuid NOT NULL, machine_id uuid NOT NULL, contents text[] NOT NULL,"
            " expires_at timestamptz NOT NULL, ended boolean NOT NULL DEFAULT false,"
            " purpose text NOT NULL DEFAULT 'remote-update');"
            f'CREATE INDEX IF NOT EXISTS deliveries_execution ON "{schema}".deliveries (execution_id);'
            f"ALTER TABLE \"{schema}\".deliveries ADD COLUMN IF NOT EXISTS packages text[] NOT NULL DEFAULT '{{}}';"
            f'CREATE INDEX IF NOT EXISTS deliveries_machine ON "{schema}".deliveries (machine_id) WHERE NOT ended;'
            f'CREATE TABLE IF NOT EXISTS "{schema}".auto_updates (machine_id uuid NOT NULL, package_id text NOT NULL,'
            " revision integer NOT NULL, delivery_id uuid NOT NULL, state text NOT NULL,"
            " PRIMARY KEY (machine_id, package_id, revision));"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            if isinstance(e, PackageDeliveryGranted):
                await _granted(conn, schema, e)
            elif isinstance(e, PackageInstallReported):
                await conn.execute(
                    f'UPDATE "{schema}".auto_updates SET state = %s WHERE delivery_id = %s AND package_id = %s',
                    ("ok" if e.outcome.ok else "failed", e.execution_id, e.outcome.package_id),
                )
            elif isinstance(e, AutoUpdateEnded):
                await _ended(conn, schema, e.delivery_id)
                await conn.execute(
                    f"UPDATE \"{schema}\".auto_updates SET state = %s WHERE delivery_id = %s AND state = 'open'",
                    ("ok" if e.ok else "failed", e.delivery_id),
                )
            elif isinstance(e, FileTransferGranted):  # the api's grant: one file of an operator's put_file
                await conn.execute(
                    f'INSERT INTO "{schema}".deliveries (token_sha256, execution_id, machine_id, contents,'
                    " expires_at, purpose) VALUES (%s, %s, %s, %s, %s, 'file') ON CONFLICT (token_sha256) DO NOTHING",
                    (e.token_sha256, e.command_id, e.machine_id, [e.sha256], e.expires_at),
                )
            elif isinstance(e, AgentCommandCompleted):
                await _ended(conn, schema, e.command_id)
            elif isinstance(e, ExecutionCompleted | ExecutionFailed | ExecutionSuspended):
                await _ended(conn, schema, e.execution_id)


async def _granted(conn: Conn, schema: str, e: PackageDeliveryGranted) -> None:
    await conn.execute(
        f'INSERT INTO "{schema}".deliveries (token_sha256, execution_id, machine_id, contents, expires_at, purpose,'
        " packages) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (token_sha256) DO NOTHING",
        (e.token_sha256, e.execution_id, e.machine_id, list(e.contents), e.expires_at, e.purpose, list(e.packages)),
    )
    if e.purpose == "auto-update":
        for package_id, revision in zip(e.packages, e.revisions, strict=False):
            await conn.execute(
                f'INSERT INTO "{schema}".auto_updates (machine_id, package_id, revision, delivery_id, state)'
                " VALUES (%s, %s, %s, %s, 'open') ON CONFLICT (machine_id, package_id, revision)"
                " DO UPDATE SET delivery_id = excluded.delivery_id, state = 'open'",
                (e.machine_id, package_id, revision, e.execution_id),
            )


async def _ended(conn: Conn, schema: str, delivery_id: object) -> None:
    await conn.execute(f'UPDATE "{schema}".deliveries SET ended = true WHERE execution_id = %s', (delivery_id,))


async def grant_by_token(conn: Conn, token_sha256: str) -> Grant | None:
    row = await (
        await conn.execute(
            f"SELECT execution_id, machine_id, contents, expires_at, ended, purpose, packages FROM {SCHEMA}.deliveries"
            " WHERE token_sha256 = %s",
            (token_sha256,),
        )
    ).fetchone()
    return Grant(row[0], row[1], tuple(row[2]), row[3], row[4], row[5], tuple(row[6])) if row else None


async def catalogue_of(conn: Conn, package_ids: Sequence[str]) -> dict[str, Stored]:
    """The current revision of each named package that exists."""
    rows = await (
        await conn.execute(
            f"SELECT definition, content_sha256, content_size, file_name FROM {SCHEMA}.packages"
            " WHERE package_id = ANY(%s)",
            (list(package_ids),),
        )
    ).fetchall()
    found = [Stored(Package.model_validate(d), sha, size, name) for d, sha, size, name in rows]
    return {s.package.id: s for s in found}


async def inventory_of(conn: Conn, machine_id: UUID) -> Inventory | None:
    row = await (
        await conn.execute(
            f"SELECT os, kernel, packages FROM {SCHEMA}.inventories WHERE machine_id = %s", (machine_id,)
        )
    ).fetchone()
    return from_reported(row[0], row[1], list(row[2])) if row else None


class AutoUpdateTimes:
    """``updater.auto_update_times``: each machine's auto-update time, when high urgency comes due."""

    name = "auto_update_times"
    schema = SCHEMA
    tables = ("auto_update_times",)
    event_types = (AutoUpdateTimeSet.wire_name,)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".auto_update_times (machine_id uuid PRIMARY KEY,'
            " at text NOT NULL, timezone text NOT NULL, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        t = f'"{schema}".auto_update_times'
        for rec in events:
            e = rec.event
            if isinstance(e, AutoUpdateTimeSet) and e.at is None:
                await conn.execute(
                    f"DELETE FROM {t} WHERE machine_id = %s AND position < %s", (e.machine_id, rec.position)
                )
            elif isinstance(e, AutoUpdateTimeSet):
                await conn.execute(
                    f"INSERT INTO {t} (machine_id, at, timezone, position) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (machine_id) DO UPDATE SET at = excluded.at, timezone = excluded.timezone,"
                    f" position = excluded.position WHERE {t}.position < excluded.position",
                    (e.machine_id, e.at, e.timezone, rec.position),
                )
