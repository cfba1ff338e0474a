"""A service's own copy of the machine directory (id, name, MACs, SMBIOS UUID, group, IP) and of the
groups' WOL broadcast addresses, kept by a consumer.

pxe resolves a booting MAC, the scheduler its targets, the imager image-name templates, the gateway
agent hellos -- each from its own tables, never from another service's read model (DESIGN.md §3).
Every update is guarded by ``position``, so a redelivered older event never overwrites a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpm_runtime.consumer import ConsumerSpec
from dpm_runtime.context import Ctx
from dpm_runtime.handlers import Router
from dpm_schemas.events import (
    GroupDefined,
    GroupDeleted,
    GroupRenamed,
    MachineDeleted,
    MachineEdited,
    MachineRegistered,
    MachineRenamed,
)


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


@dataclass(frozen=True)
class DirectoryTables:
    """The directory's two tables in one service's schema (quoted, ready for SQL)."""

    schema: str

    @property
    def machines(self) -> str:
        return f'"{self.schema}".machine_directory'

    @property
    def groups(self) -> str:
        return f'"{self.schema}".group_directory'


def directory_consumer(service: str, schema: str) -> ConsumerSpec:
    """The consumer that keeps ``<schema>.machine_directory`` and ``<schema>.group_directory``."""
    router = Router(service)
    router.add(upsert_machine, MachineRegistered, MachineEdited, durable="machine-directory")
    router.add(renamed, MachineRenamed, durable="machine-directory")
    router.add(deleted, MachineDeleted, durable="machine-directory")
    router.add(group_defined, GroupDefined, durable="machine-directory")
    router.add(group_deleted, GroupDeleted, durable="machine-directory")
    router.add(group_renamed, GroupRenamed, durable="machine-directory")
    (spec,) = router.bind(tables=DirectoryTables(schema))
    return spec


async def upsert_machine(e: MachineRegistered | MachineEdited, ctx: Ctx, *, tables: DirectoryTables) -> None:
    machines = tables.machines
    await ctx.conn.execute(
        f"INSERT INTO {machines} (machine_id, name, macs, smbios_uuid, group_name, ip, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET name = excluded.name,"
        " macs = excluded.macs, smbios_uuid = excluded.smbios_uuid, group_name = excluded.group_name,"
        " ip = excluded.ip,"
        f" deleted = false, position = excluded.position WHERE {machines}.position < excluded.position",
        (e.machine_id, e.name, list(e.macs), e.smbios_uuid, e.group, str(e.ip) if e.ip else None, ctx.position),
    )


async def renamed(e: MachineRenamed, ctx: Ctx, *, tables: DirectoryTables) -> None:
    await ctx.conn.execute(
        f"UPDATE {tables.machines} SET name = %s, position = %s WHERE machine_id = %s AND position < %s",
        (e.name, ctx.position, e.machine_id, ctx.position),
    )


async def deleted(e: MachineDeleted, ctx: Ctx, *, tables: DirectoryTables) -> None:
    await ctx.conn.execute(
        f"UPDATE {tables.machines} SET deleted = true, position = %s WHERE machine_id = %s AND position < %s",
        (ctx.position, e.machine_id, ctx.position),
    )


async def group_defined(e: GroupDefined, ctx: Ctx, *, tables: DirectoryTables) -> None:
    groups = tables.groups
    wol = str(e.wol_broadcast) if e.wol_broadcast else None
    await ctx.conn.execute(
        f"INSERT INTO {groups} (name, wol_broadcast, position) VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE"
        f" SET wol_broadcast = excluded.wol_broadcast, deleted = false, position = excluded.position"
        f" WHERE {groups}.position < excluded.position",
        (e.name, wol, ctx.position),
    )


async def group_renamed(e: GroupRenamed, ctx: Ctx, *, tables: DirectoryTables) -> None:
    conn, groups = ctx.conn, tables.groups
    await conn.execute(f"DELETE FROM {groups} WHERE name = %s", (e.new_name,))  # a deleted namesake
    await conn.execute(
        f"UPDATE {groups} SET name = %s, position = %s WHERE name = %s", (e.new_name, ctx.position, e.name)
    )
    await conn.execute(f"UPDATE {tables.machines} SET group_name = %s WHERE group_name = %s", (e.new_name, e.name))


async def group_deleted(e: GroupDeleted, ctx: Ctx, *, tables: DirectoryTables) -> None:
    await ctx.conn.execute(
        f"UPDATE {tables.groups} SET deleted = true, position = %s WHERE name = %s AND position < %s",
        (ctx.position, e.name, ctx.position),
    )
