"""The machine list projection (``api.machines``): SQL adapter around the pure ``domain.evolve``."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from dpm_runtime.eventlog import Conn
from dpm_schemas.envelope import RecordedEvent

from dpm_api.domain import EVENT_TYPES, MachineRow, evolve, target_of

COLUMNS = tuple(f.name for f in dataclasses.fields(MachineRow))


class MachineList:
    name = "machines"
    schema = "api"
    tables = ("machines",)
    event_types = EVENT_TYPES

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".machines ('
            " machine_id uuid PRIMARY KEY, name text NOT NULL, macs text[] NOT NULL, smbios_uuid uuid,"
            " ip text, group_name text NOT NULL, os_type text, registered_at timestamptz NOT NULL,"
            " online boolean NOT NULL, last_boot_at timestamptz, last_boot_arch text, last_boot_stage text,"
            " boot_count integer NOT NULL, position bigint NOT NULL);"
            f'CREATE INDEX IF NOT EXISTS machines_macs ON "{schema}".machines USING gin (macs);'
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".machines'
        ids = {e.event.machine_id for e in events if hasattr(e.event, "machine_id")}
        macs = {e.event.mac for e in events if hasattr(e.event, "mac")}
        cur = await conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM {table} WHERE machine_id = ANY(%s) OR macs && %s",
            (list(ids), list(macs)),
        )
        rows: dict[uuid.UUID, MachineRow | None] = {}
        for raw in await cur.fetchall():
            values = dict(zip(COLUMNS, raw, strict=True))
            row = MachineRow(**{**values, "macs": tuple(values["macs"])})
            rows[row.machine_id] = row
        loaded = dict(rows)
        by_mac = {mac: r.machine_id for r in rows.values() if r for mac in r.macs}
        for rec in events:
            machine_id = target_of(rec.event, by_mac)
            if machine_id is None:
                continue
            before = rows.get(machine_id)
            after = evolve(rec.event, before, rec)
            rows[machine_id] = after
            if before is not None:
                for mac in before.macs:
                    by_mac.pop(mac, None)
            if after is not None:
                by_mac.update(dict.fromkeys(after.macs, machine_id))
        changed = [r for key, r in rows.items() if r is not None and r != loaded.get(key)]
        gone = [key for key, r in rows.items() if r is None and loaded.get(key) is not None]
        if gone:
            await conn.execute(f"DELETE FROM {table} WHERE machine_id = ANY(%s)", (gone,))
        if changed:
            updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
            async with conn.cursor() as c:
                await c.executemany(
                    f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
                    f" ON CONFLICT (machine_id) DO UPDATE SET {updates}",
                    [(*dataclasses.astuple(r)[:2], list(r.macs), *dataclasses.astuple(r)[3:]) for r in changed],
                )
