"""A service's own copy of the machine directory (id, name, MACs, SMBIOS UUID, group, IP) and of the
groups' WOL broadcast addresses, kept by a consumer.

pxe resolves a booting MAC, the scheduler its targets, the imager image-name templates, the gateway
agent hellos -- each from its own tables, never from another service's read model (DESIGN.md §3).
Every update is guarded by ``position``, so a redelivered older event never overwrites a newer one.
"""

from __future__ import annotations

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    GroupDefined,
    GroupDeleted,
    GroupRenamed,
    MachineDeleted,
    MachineEdited,
    MachineRegistered,
    MachineRenamed,
)
from dpm_schemas.subjects import durable_name


def directory_ddl(schema: str) -> list[str]:
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f'CREATE TABLE IF NOT EXISTS "{schema}".machine_directory ('
        " machine_id uuid PRIMARY KEY, name text NOT NULL, macs text[] NOT NULL, smbios_uuid uuid,"
        " group_name text NOT NULL DEFAULT 'new-machines', deleted boolean NOT NULL DEFAULT false,"
        " position bigint NOT NULL)",
        f'ALTER TABLE "{schema}".machine_directory ADD COLUMN IF NOT EXISTS ip text',  # pxe: full-mode reservations
        f'CREATE INDEX IF NOT EXISTS machine_directory_macs ON "{schema}".machine_directory USING gin (macs)',
        f'CREATE TABLE IF NOT EXISTS "{schema}".group_directory ('
        " name text PRIMARY KEY, wol_broadcast text, deleted boolean NOT NULL DEFAULT false,"
        " position bigint NOT NULL)",
    ]


def directory_consumer(service: str, schema: str) -> ConsumerSpec:
    """The consumer that keeps ``<schema>.machine_directory`` and ``<schema>.group_directory``."""
    machines = f'"{schema}".machine_directory'
    groups = f'"{schema}".group_directory'

    async def upsert_machine(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MachineRegistered | MachineEdited)
        await conn.execute(
            f"INSERT INTO {machines} (machine_id, name, macs, smbios_uuid, group_name, ip, position)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET name = excluded.name,"
            " macs = excluded.macs, smbios_uuid = excluded.smbios_uuid, group_name = excluded.group_name,"
            " ip = excluded.ip,"
            f" deleted = false, position = excluded.position WHERE {machines}.position < excluded.position",
            (e.machine_id, e.name, list(e.macs), e.smbios_uuid, e.group, str(e.ip) if e.ip else None, rec.position),
        )

    async def renamed(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MachineRenamed)
        await conn.execute(
            f"UPDATE {machines} SET name = %s, position = %s WHERE machine_id = %s AND position < %s",
            (e.name, rec.position, e.machine_id, rec.position),
        )

    async def deleted(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, MachineDeleted)
        await conn.execute(
            f"UPDATE {machines} SET deleted = true, position = %s WHERE machine_id = %s AND position < %s",
            (rec.position, e.machine_id, rec.position),
        )

    async def group_defined(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, GroupDefined)
        wol = str(e.wol_broadcast) if e.wol_broadcast else None
        await conn.execute(
            f"INSERT INTO {groups} (name, wol_broadcast, position) VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE"
            f" SET wol_broadcast = excluded.wol_broadcast, deleted = false, position = excluded.position"
            f" WHERE {groups}.position < excluded.position",
            (e.name, wol, rec.position),
        )

    async def group_renamed(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, GroupRenamed)
        await conn.execute(f"DELETE FROM {groups} WHERE name = %s", (e.new_name,))  # a deleted namesake
        await conn.execute(
            f"UPDATE {groups} SET name = %s, position = %s WHERE name = %s", (e.new_name, rec.position, e.name)
        )
        await conn.execute(f"UPDATE {machines} SET group_name = %s WHERE group_name = %s", (e.new_name, e.name))

    async def group_deleted(rec: RecordedEvent, conn: Conn) -> None:
        e = rec.event
        assert isinstance(e, GroupDeleted)
        await conn.execute(
            f"UPDATE {groups} SET deleted = true, position = %s WHERE name = %s AND position < %s",
            (rec.position, e.name, rec.position),
        )

    return ConsumerSpec(
        durable=durable_name(service, "machine-directory"),
        handlers={
            MachineRegistered: upsert_machine,
            MachineEdited: upsert_machine,
            MachineRenamed: renamed,
            MachineDeleted: deleted,
            GroupDefined: group_defined,
            GroupDeleted: group_deleted,
            GroupRenamed: group_renamed,
        },
    )
