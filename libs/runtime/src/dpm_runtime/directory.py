"""A service's own copy of the machine directory (id, name, MACs, SMBIOS UUID, group, IP) and of the
groups' WOL broadcast addresses: the projection "directory" in the service's schema.

pxe resolves a booting MAC, the scheduler its targets, the imager image-name templates, the gateway
agent hellos -- each from its own tables, never from another service's read model (DESIGN.md §3).
A projection, fed from the log in order, so a rebuild replays it like any other read model. Every
update still carries ``position`` and is guarded by it: an admin's retry of a quarantined event
applies it after the events that followed it, and an older event never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    AgentVersionChanged,
    GroupDefined,
    GroupDeleted,
    GroupRenamed,
    MachineCameOnline,
    MachineDeleted,
    MachineEdited,
    MachineRegistered,
    MachineRenamed,
    MachineWentOffline,
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
        f'CREATE INDEX IF NOT EXISTS machine_directory_ip ON "{schema}".machine_directory (ip)',
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


class MachineDirectory:
    """``<schema>.machine_directory`` and ``<schema>.group_directory``: one instance per service."""

    name = "directory"
    tables = ("machine_directory", "group_directory")
    event_types = tuple(
        cls.wire_name
        for cls in (
            MachineRegistered,
            MachineEdited,
            MachineRenamed,
            MachineDeleted,
            GroupDefined,
            GroupDeleted,
            GroupRenamed,
        )
    )

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def ddl(self, schema: str) -> str:
        return "".join(f"{statement};" for statement in directory_ddl(schema))

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        tables = DirectoryTables(schema)
        for rec in events:
            await _APPLY[type(rec.event)](conn, tables, rec.event, rec.position)


async def upsert_machine(conn: Conn, tables: DirectoryTables, e: MachineRegistered | MachineEdited, at: int) -> None:
    machines = tables.machines
    await conn.execute(
        f"INSERT INTO {machines} (machine_id, name, macs, smbios_uuid, group_name, ip, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET name = excluded.name,"
        " macs = excluded.macs, smbios_uuid = excluded.smbios_uuid, group_name = excluded.group_name,"
        " ip = excluded.ip,"
        f" deleted = false, position = excluded.position WHERE {machines}.position < excluded.position",
        (e.machine_id, e.name, list(e.macs), e.smbios_uuid, e.group, str(e.ip) if e.ip else None, at),
    )


async def renamed(conn: Conn, tables: DirectoryTables, e: MachineRenamed, at: int) -> None:
    await conn.execute(
        f"UPDATE {tables.machines} SET name = %s, position = %s WHERE machine_id = %s AND position < %s",
        (e.name, at, e.machine_id, at),
    )


async def deleted(conn: Conn, tables: DirectoryTables, e: MachineDeleted, at: int) -> None:
    await conn.execute(
        f"UPDATE {tables.machines} SET deleted = true, position = %s WHERE machine_id = %s AND position < %s",
        (at, e.machine_id, at),
    )


async def group_defined(conn: Conn, tables: DirectoryTables, e: GroupDefined, at: int) -> None:
    groups = tables.groups
    wol = str(e.wol_broadcast) if e.wol_broadcast else None
    await conn.execute(
        f"INSERT INTO {groups} (name, wol_broadcast, position) VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE"
        f" SET wol_broadcast = excluded.wol_broadcast, deleted = false, position = excluded.position"
        f" WHERE {groups}.position < excluded.position",
        (e.name, wol, at),
    )


async def group_renamed(conn: Conn, tables: DirectoryTables, e: GroupRenamed, at: int) -> None:
    """Guarded like the rest: replayed over rows that already saw it (a projection set up over the
    tables a consumer kept), it must not delete the group it named nor move machines edited since."""
    groups = tables.groups
    # a deleted namesake of the new name goes
    await conn.execute(f"DELETE FROM {groups} WHERE name = %s AND position < %s", (e.new_name, at))
    await conn.execute(
        f"UPDATE {groups} SET name = %s, position = %s WHERE name = %s AND position < %s", (e.new_name, at, e.name, at)
    )
    await conn.execute(
        f"UPDATE {tables.machines} SET group_name = %s WHERE group_name = %s AND position < %s",
        (e.new_name, e.name, at),
    )


async def group_deleted(conn: Conn, tables: DirectoryTables, e: GroupDeleted, at: int) -> None:
    await conn.execute(
        f"UPDATE {tables.groups} SET deleted = true, position = %s WHERE name = %s AND position < %s",
        (at, e.name, at),
    )


_APPLY: dict[type[Any], Callable[[Conn, DirectoryTables, Any, int], Awaitable[None]]] = {
    MachineRegistered: upsert_machine,
    MachineEdited: upsert_machine,
    MachineRenamed: renamed,
    MachineDeleted: deleted,
    GroupDefined: group_defined,
    GroupDeleted: group_deleted,
    GroupRenamed: group_renamed,
}


class Presence:
    """``<schema>.presence``: machine id -> online and the agent's version, from the agents'
    MachineCameOnline/WentOffline and AgentVersionChanged (the scheduler's power-on and start, the
    updater's automatic deliveries and its agent upgrades). Going offline keeps the last version."""

    name = "presence"
    tables = ("presence",)
    event_types = (MachineCameOnline.wire_name, MachineWentOffline.wire_name, AgentVersionChanged.wire_name)

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".presence (machine_id uuid PRIMARY KEY, online boolean NOT NULL,'
            f' position bigint NOT NULL); ALTER TABLE "{schema}".presence ADD COLUMN IF NOT EXISTS agent_version text;'
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            if isinstance(e, MachineCameOnline | MachineWentOffline | AgentVersionChanged):
                version = None if isinstance(e, MachineWentOffline) else e.agent_version
                await conn.execute(
                    f'INSERT INTO "{schema}".presence (machine_id, online, agent_version, position)'
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET online = excluded.online,"
                    f' agent_version = coalesce(excluded.agent_version, "{schema}".presence.agent_version),'
                    " position = excluded.position"
                    f' WHERE "{schema}".presence.position < excluded.position',  # an admin's late retry
                    (e.machine_id, not isinstance(e, MachineWentOffline), version, rec.position),
                )
