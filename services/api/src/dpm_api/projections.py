"""The machine list projection (``api.machines``): SQL adapter around the pure ``domain.evolve``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from dpm_api.domain.rules import check_group_network
from dpm_api.domain.view import EVENT_TYPES, MACHINE_ID_EVENTS, MachineRow, evolve, target_of
from dpm_runtime.eventlog import Conn, last_before
from dpm_schemas import subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    ApiTokenIssued,
    ApiTokenRevoked,
    GroupDefined,
    GroupDeleted,
    GroupRenamed,
    MachineBooted,
    MachineCameOnline,
    MachineRegistered,
    MachineWentOffline,
    UserCreated,
    UserDisabled,
    UserRoleChanged,
)
from dpm_schemas.ids import stream_id

PRESENCE = (MachineCameOnline.wire_name, MachineWentOffline.wire_name)
COLUMNS = MachineRow._fields
_MACS = COLUMNS.index("macs")


def row_from_db(raw: Sequence[object]) -> MachineRow:
    """A database row as the domain's MachineRow (macs come back as a list)."""
    return MachineRow._make((*raw[:_MACS], tuple(raw[_MACS]), *raw[_MACS + 1 :]))  # type: ignore[arg-type]


class MachineList:
    name = "machines"
    schema = "api"
    tables = ("machines",)
    event_types = (*EVENT_TYPES, GroupRenamed.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".machines ('
            " machine_id uuid PRIMARY KEY, name text NOT NULL, macs text[] NOT NULL, smbios_uuid uuid,"
            " ip text, group_name text NOT NULL, os_type text, registered_at timestamptz NOT NULL,"
            " online boolean NOT NULL, last_boot_at timestamptz, last_boot_arch text, last_boot_stage text,"
            " boot_count integer NOT NULL, agent_version text, power_error text, position bigint NOT NULL);"
            f'CREATE INDEX IF NOT EXISTS machines_macs ON "{schema}".machines USING gin (macs);'
            # the console's pages: ordered by name, whole fleet or one group (console/listing.py)
            f'CREATE INDEX IF NOT EXISTS machines_name ON "{schema}".machines (name, machine_id);'
            f'CREATE INDEX IF NOT EXISTS machines_group_name ON "{schema}".machines (group_name, name, machine_id);'
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".machines'
        ids = {e.event.machine_id for e in events if isinstance(e.event, MACHINE_ID_EVENTS)}
        macs = {e.event.mac for e in events if isinstance(e.event, MachineBooted)}
        rows = await _load(conn, table, ids, macs)
        loaded = dict(rows)
        by_mac = {mac: r.machine_id for r in rows.values() if r for mac in r.macs}
        for rec in events:
            if isinstance(rec.event, GroupRenamed):  # every machine of the group, loaded here or not
                old, new = rec.event.name, rec.event.new_name
                await conn.execute(f"UPDATE {table} SET group_name = %s WHERE group_name = %s", (new, old))
                for key, r in rows.items():
                    if r is not None and r.group_name == old:
                        rows[key] = r._replace(group_name=new)
                continue
            machine_id = target_of(rec.event, by_mac)
            if machine_id is None:
                continue
            before = rows.get(machine_id)
            after = evolve(rec.event, before, rec)
            if before is None and after is not None and isinstance(rec.event, MachineRegistered):
                after = await _present_already(conn, after, rec)
            rows[machine_id] = after
            old_macs = before.macs if before is not None else ()
            new_macs = after.macs if after is not None else ()
            if old_macs != new_macs:  # only registration and deletion move MACs
                for mac in old_macs:
                    by_mac.pop(mac, None)
                by_mac.update(dict.fromkeys(new_macs, machine_id))
        changed = [r for key, r in rows.items() if r is not None and r != loaded.get(key)]
        gone = [key for key, r in rows.items() if r is None and loaded.get(key) is not None]
        if gone:
            await conn.execute(f"DELETE FROM {table} WHERE machine_id = ANY(%s)", (gone,))
        if changed:
            await _upsert(conn, table, [(*r[:_MACS], list(r.macs), *r[_MACS + 1 :]) for r in changed])


async def _load(conn: Conn, table: str, ids: set[uuid.UUID], macs: set[str]) -> dict[uuid.UUID, MachineRow | None]:
    """The rows a batch touches: by machine id, and by MAC for boots."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM {table} WHERE machine_id = ANY(%s) OR macs && %s"
    cur = await conn.execute(sql, (list(ids), list(macs)))
    return {(row := row_from_db(raw)).machine_id: row for raw in await cur.fetchall()}


async def _present_already(conn: Conn, row: MachineRow, rec: RecordedEvent) -> MachineRow:
    """An agent that enrols and says hello at once comes online before the api's reaction registers
    its machine, so the fold met MachineCameOnline with no row to change. The registration picks up
    the last presence event before it from the log (immutable below ``rec``: live equals rebuild)."""
    prior = await last_before(conn, stream_id(subjects.AGENT, row.machine_id), PRESENCE, before=rec.position)
    if prior is None:
        return row
    present = evolve(prior.event, row, prior)
    return present._replace(position=rec.position) if present is not None else row


_COPY_THRESHOLD = 50  # above this many rows, COPY into a temp table and merge with one statement


async def _upsert(conn: Conn, table: str, rows: list[tuple[object, ...]]) -> None:
    columns = ", ".join(COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    if len(rows) <= _COPY_THRESHOLD:
        async with conn.cursor() as c:
            await c.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
                f" ON CONFLICT (machine_id) DO UPDATE SET {updates}",
                rows,
            )
        return
    await conn.execute(f"CREATE TEMP TABLE machines_stage (LIKE {table}) ON COMMIT DROP")
    async with conn.cursor().copy(f"COPY machines_stage ({columns}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)
    await conn.execute(
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM machines_stage"
        f" ON CONFLICT (machine_id) DO UPDATE SET {updates}"
    )
    await conn.execute("DROP TABLE machines_stage")


class GroupList:
    """``api.groups``: machine groups with their network settings and the WOL broadcast they imply."""

    name = "groups"
    schema = "api"
    tables = ("groups",)
    event_types = (GroupDefined.wire_name, GroupDeleted.wire_name, GroupRenamed.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".groups (name text PRIMARY KEY, subnet text, broadcast text,'
            " gateway text, wol_broadcast text, description text NOT NULL, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        table = f'"{schema}".groups'
        for rec in events:
            e = rec.event
            if isinstance(e, GroupDeleted):
                await conn.execute(f"DELETE FROM {table} WHERE name = %s", (e.name,))
                continue
            if isinstance(e, GroupRenamed):
                await conn.execute(
                    f"UPDATE {table} SET name = %s, position = %s WHERE name = %s", (e.new_name, rec.position, e.name)
                )
                continue
            assert isinstance(e, GroupDefined)
            check_group_network(e.name, e.subnet, e.broadcast, e.gateway)  # refused at the API; guards old events
            wol = e.wol_broadcast
            await conn.execute(
                f"INSERT INTO {table} (name, subnet, broadcast, gateway, wol_broadcast, description, position)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET subnet = excluded.subnet,"
                " broadcast = excluded.broadcast, gateway = excluded.gateway, wol_broadcast = excluded.wol_broadcast,"
                " description = excluded.description, position = excluded.position",
                (e.name, _str(e.subnet), _str(e.broadcast), _str(e.gateway), _str(wol), e.description, rec.position),
            )


def _str(value: object) -> str | None:
    return None if value is None else str(value)


class Accounts:
    """``api.users`` and ``api.api_tokens``: who may log in, with which role, and which tokens are valid."""

    name = "accounts"
    schema = "api"
    tables = ("users", "api_tokens")
    event_types = tuple(
        c.wire_name for c in (UserCreated, UserRoleChanged, UserDisabled, ApiTokenIssued, ApiTokenRevoked)
    )

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".users (username text PRIMARY KEY, role text NOT NULL,'
            " disabled boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL);"
            f'CREATE TABLE IF NOT EXISTS "{schema}".api_tokens (token_id uuid PRIMARY KEY, username text NOT NULL,'
            " name text NOT NULL, token_sha256 text NOT NULL UNIQUE, revoked boolean NOT NULL DEFAULT false,"
            " created_at timestamptz NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        users, tokens = f'"{schema}".users', f'"{schema}".api_tokens'
        for rec in events:
            e = rec.event
            if isinstance(e, UserCreated):
                await conn.execute(
                    f"INSERT INTO {users} (username, role, created_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (username) DO UPDATE SET role = excluded.role, disabled = false",
                    (e.username, e.role.value, rec.occurred_at),
                )
            elif isinstance(e, UserRoleChanged):
                await conn.execute(f"UPDATE {users} SET role = %s WHERE username = %s", (e.role.value, e.username))
            elif isinstance(e, UserDisabled):
                await conn.execute(f"UPDATE {users} SET disabled = true WHERE username = %s", (e.username,))
            elif isinstance(e, ApiTokenIssued):
                await conn.execute(
                    f"INSERT INTO {tokens} (token_id, username, name, token_sha256, created_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (e.token_id, e.username, e.name, e.token_sha256, rec.occurred_at),
                )
            elif isinstance(e, ApiTokenRevoked):
                await conn.execute(f"UPDATE {tokens} SET revoked = true WHERE token_id = %s", (e.token_id,))
