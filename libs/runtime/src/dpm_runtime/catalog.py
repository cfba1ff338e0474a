"""The package catalogue and the machines' inventories as projections, one copy per service that
judges applicability in its own schema (the api for ``GET /machines/{m}/packages``, the updater for
the remote-update steps it delivers), as ``directory`` is the machine directory's (DESIGN.md §3)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import InventoryReported, PackageRegistered, PackageRemoved


class PackageCatalog:
    """The current revision of every package, with the content it names (a removed one is gone)."""

    tables = ("packages",)
    event_types = (PackageRegistered.wire_name, PackageRemoved.wire_name)
    reads_metadata = True  # registered_by is the registering actor (readmodel.fetch loads the column)

    def __init__(self, schema: str, name: str) -> None:
        self.schema, self.name = schema, name  # the name is unique across services (its checkpoint)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".packages (package_id text PRIMARY KEY, revision integer NOT NULL,'
            " definition jsonb NOT NULL, content_sha256 text, content_size bigint NOT NULL, file_name text NOT NULL,"
            " registered_at timestamptz NOT NULL, registered_by text NOT NULL, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        t = f'"{schema}".packages'
        for rec in events:
            e = rec.event
            if isinstance(e, PackageRegistered):
                p = e.package
                await conn.execute(
                    f"INSERT INTO {t} (package_id, revision, definition, content_sha256, content_size, file_name,"
                    " registered_at, registered_by, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (package_id) DO UPDATE SET revision = excluded.revision,"
                    " definition = excluded.definition, content_sha256 = excluded.content_sha256,"
                    " content_size = excluded.content_size, file_name = excluded.file_name,"
                    " registered_at = excluded.registered_at, registered_by = excluded.registered_by,"
                    f" position = excluded.position WHERE {t}.position < excluded.position",
                    (
                        *(p.id, p.revision, json.dumps(p.model_dump(mode="json")), e.content_sha256),
                        *(e.content_size, e.file_name, rec.occurred_at, rec.metadata.actor, rec.position),
                    ),
                )
            elif isinstance(e, PackageRemoved):
                await conn.execute(
                    f"DELETE FROM {t} WHERE package_id = %s AND position < %s", (e.package_id, rec.position)
                )


class Inventories:
    """The last inventory each machine's agent reported (``GET /machines/{m}/inventory``)."""

    tables = ("inventories",)
    event_types = (InventoryReported.wire_name,)

    def __init__(self, schema: str, name: str) -> None:
        self.schema, self.name = schema, name

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".inventories (machine_id uuid PRIMARY KEY, os text NOT NULL,'
            " kernel text NOT NULL, packages text[] NOT NULL, reported_at timestamptz NOT NULL,"
            " position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        t = f'"{schema}".inventories'
        for rec in events:
            e = rec.event
            if isinstance(e, InventoryReported):
                await conn.execute(
                    f"INSERT INTO {t} (machine_id, os, kernel, packages, reported_at, position)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET os = excluded.os,"
                    " kernel = excluded.kernel, packages = excluded.packages, reported_at = excluded.reported_at,"
                    f" position = excluded.position WHERE {t}.position < excluded.position",
                    (e.machine_id, e.os, e.kernel, list(e.packages), rec.occurred_at, rec.position),
                )
