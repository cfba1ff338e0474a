"""This service's own copies of the directory and of agent presence (read only here)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from ipaddress import IPv4Address

from dpm_runtime.eventlog import Conn
from dpm_scheduler.adapters.driver import PowerTarget


@dataclass(frozen=True)
class Directory:
    schema: str

    async def power_target(self, conn: Conn, machine_id: uuid.UUID) -> PowerTarget | None:
        """The machine's MACs and its group's WOL broadcast."""
        cur = await conn.execute(
            f'SELECT m.macs, g.wol_broadcast FROM "{self.schema}".machine_directory m'
            f' LEFT JOIN "{self.schema}".group_directory g ON g.name = m.group_name AND NOT g.deleted'
            " WHERE m.machine_id = %s AND NOT m.deleted",
            (machine_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return PowerTarget(str(machine_id), tuple(row[0]), IPv4Address(row[1]) if row[1] else None)

    async def name(self, conn: Conn, machine_id: uuid.UUID) -> str:
        cur = await conn.execute(
            f'SELECT name FROM "{self.schema}".machine_directory WHERE machine_id = %s', (machine_id,)
        )
        row = await cur.fetchone()
        return str(row[0]) if row else str(machine_id)

    async def by_mac(self, conn: Conn, mac: str) -> uuid.UUID | None:
        cur = await conn.execute(
            f'SELECT machine_id FROM "{self.schema}".machine_directory WHERE %s = ANY(macs) AND NOT deleted', (mac,)
        )
        row = await cur.fetchone()
        return None if row is None else row[0]

    async def online(self, conn: Conn, machine_id: uuid.UUID) -> bool:
        cur = await conn.execute(f'SELECT online FROM "{self.schema}".presence WHERE machine_id = %s', (machine_id,))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def of_group(self, conn: Conn, group: str) -> list[uuid.UUID]:
        cur = await conn.execute(
            f'SELECT machine_id FROM "{self.schema}".machine_directory WHERE group_name = %s AND NOT deleted'
            " ORDER BY name",
            (group,),
        )
        return [r[0] for r in await cur.fetchall()]
