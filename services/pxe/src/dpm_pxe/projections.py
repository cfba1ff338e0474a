"""pxe's read models of the log: the boot settings in force and the machines waiting to network-boot.

- ``boot_settings`` (projection "boot_settings"): the last BootSettingsChanged, stored as its payload
  with the type and version it was encoded at, so a later version of the event is upcast on read
  like any event in the log. ``BootState`` holds a copy in memory for the DHCP listener and follows
  this row (``adapters.state.follow``), so a rebuild leaves memory and table equal.
- ``netboot`` (projection "netboot"): the pending netboot of each machine, with the position of its
  request. Its checkpoint is what a "boot locally" answer compares with the log
  (``adapters.readmodel.netboot_lag``).

Guarded by ``position``: an admin's retry applies a quarantined event after those that followed it.
Neither reads another table nor the clock, so a rebuild replays them to the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from dpm_pxe.adapters.state import SCHEMA
from dpm_runtime.eventlog import Conn
from dpm_schemas import codec
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import BootSettingsChanged, NetbootCleared, NetbootRequested

SERVICE = "pxe"  # the service that runs these projections: their full names are "pxe.<name>"


class BootSettings:
    name = "boot_settings"
    schema = SCHEMA
    tables = ("boot_settings",)
    event_types = (BootSettingsChanged.wire_name,)

    def ddl(self, schema: str) -> str:
        table = f'"{schema}".boot_settings'
        return (
            f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY CHECK (id = 1), type text NOT NULL,"
            " version integer NOT NULL, payload bytea NOT NULL, position bigint NOT NULL);"
            # a row the consumer wrote before type and version were stored: BootSettingsChanged v1
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS type text NOT NULL DEFAULT 'BootSettingsChanged';"
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".boot_settings'
        for rec in events:
            e = rec.event
            assert isinstance(e, BootSettingsChanged)
            await conn.execute(
                f"INSERT INTO {table} AS s (id, type, version, payload, position) VALUES (1, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET type = excluded.type, version = excluded.version,"
                " payload = excluded.payload, position = excluded.position WHERE s.position < excluded.position",
                (e.wire_name, e.wire_version, codec.encode_payload(e), rec.position),
            )


class Netboot:
    name = "netboot"
    schema = SCHEMA
    tables = ("netboot",)
    event_types = (NetbootRequested.wire_name, NetbootCleared.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".netboot (machine_id uuid PRIMARY KEY, execution_id uuid NOT NULL,'
            " expires_at timestamptz, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".netboot'
        for rec in events:
            e = rec.event
            if isinstance(e, NetbootRequested):
                await conn.execute(
                    f"INSERT INTO {table} AS n (machine_id, execution_id, expires_at, position)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET"
                    " execution_id = excluded.execution_id, expires_at = excluded.expires_at,"
                    " position = excluded.position WHERE n.position < excluded.position",
                    (e.machine_id, e.execution_id, e.expires_at, rec.position),
                )
            elif isinstance(e, NetbootCleared):
                await conn.execute(
                    f"DELETE FROM {table} WHERE machine_id = %s AND execution_id = %s AND position < %s",
                    (e.machine_id, e.execution_id, rec.position),
                )


NETBOOT = f"{SERVICE}.{Netboot.name}"
