"""A service's own copy of the machine directory (id, name, MACs, SMBIOS UUID), kept by a consumer.

pxe resolves a booting MAC, the scheduler its targets, the imager image-name templates, the gateway
agent hellos -- each from its own table, never from another service's read model (DESIGN.md §3).
"""

from __future__ import annotations

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import MachineDeleted, MachineRegistered, MachineRenamed
from dpm_schemas.subjects import durable_name


def directory_ddl(schema: str) -> list[str]:
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f'CREATE TABLE IF NOT EXISTS "{schema}".machine_directory ('
        " machine_id uuid PRIMARY KEY, name text NOT NULL, macs text[] NOT NULL,"
        " smbios_uuid uuid, deleted boolean NOT NULL DEFAULT false, position bigint NOT NULL)",
        f'CREATE INDEX IF NOT EXISTS machine_directory_macs ON "{schema}".machine_directory USING gin (macs)',
    ]


def directory_consumer(service: str, schema: str) -> ConsumerSpec:
    """The consumer that keeps ``<schema>.machine_directory``; later positions win on redelivery."""
    table = f'"{schema}".machine_directory'

    async def registered(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MachineRegistered)
        await conn.execute(
            f"INSERT INTO {table} (machine_id, name, macs, smbios_uuid, position) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (machine_id) DO UPDATE SET name = excluded.name, macs = excluded.macs,"
            f" smbios_uuid = excluded.smbios_uuid, deleted = false, position = excluded.position"
            f" WHERE {table}.position < excluded.position",
            (e.machine_id, e.name, list(e.macs), e.smbios_uuid, rec.position),
        )

    async def renamed(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MachineRenamed)
        await conn.execute(
            f"UPDATE {table} SET name = %s, position = %s WHERE machine_id = %s AND position < %s",
            (e.name, rec.position, e.machine_id, rec.position),
        )

    async def deleted(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MachineDeleted)
        await conn.execute(
            f"UPDATE {table} SET deleted = true, position = %s WHERE machine_id = %s AND position < %s",
            (rec.position, e.machine_id, rec.position),
        )

    return ConsumerSpec(
        durable=durable_name(service, "machine-directory"),
        handlers={MachineRegistered: registered, MachineRenamed: renamed, MachineDeleted: deleted},
    )
