"""Which groups exist and which machines they hold, as of the log -- not as of the read models.

Deleting a group and registering a machine into it used to race: each checked a read model (the
group exists; the group is empty), both committed, and a deleted group held machines. Now both take
the group's advisory lock for their transaction, so one commits first, and the other decides on
the log as it stands: the read model, plus the events it has not applied yet (read after its
checkpoint and folded here). No waiting on a projection inside a transaction, and it holds across
api replicas, since the lock lives in PostgreSQL.
"""

from __future__ import annotations

import uuid

from dpm_runtime.eventlog import Conn, EventLog
from dpm_schemas.events import (
    GroupDefined,
    GroupDeleted,
    GroupRenamed,
    MachineDeleted,
    MachineEdited,
    MachineRegistered,
)
from dpm_schemas.events.groups import NEW_MACHINES

GROUP_EVENTS = (GroupDefined.wire_name, GroupDeleted.wire_name, GroupRenamed.wire_name)
MACHINE_EVENTS = (
    MachineRegistered.wire_name,
    MachineEdited.wire_name,
    MachineDeleted.wire_name,
    GroupRenamed.wire_name,
)
TAIL = 100_000  # events a read model may lag behind by; far more than it ever does


async def lock_groups(conn: Conn, *names: str) -> None:
    """The groups' transaction-scoped advisory locks, in one order (two transactions never wait on
    each other crosswise). The built-in group is never deleted or renamed, so it needs none."""
    for name in sorted(set(names) - {NEW_MACHINES}):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 12))", (f"group:{name}",))


async def _checkpoint(conn: Conn, projection: str) -> int:
    row = await (
        await conn.execute("SELECT position FROM dpm_checkpoints WHERE name = %s", (f"projection:api.{projection}",))
    ).fetchone()
    return int(row[0]) if row else 0


async def group_exists(log: EventLog, conn: Conn, name: str) -> bool:
    """The group exists in the log now (call under its lock for a decision that must hold)."""
    if name == NEW_MACHINES:
        return True
    after = await _checkpoint(conn, "groups")  # first: the rows read next are at least this new
    exists = await (await conn.execute("SELECT 1 FROM api.groups WHERE name = %s", (name,))).fetchone() is not None
    for rec in await log.read_all(after=after, limit=TAIL, types=GROUP_EVENTS, conn=conn, metadata=False):
        e = rec.event
        if isinstance(e, GroupRenamed):
            exists = (exists and e.name != name) or e.new_name == name
        elif isinstance(e, GroupDefined | GroupDeleted) and e.name == name:
            exists = isinstance(e, GroupDefined)
    return exists


async def machines_in(log: EventLog, conn: Conn, name: str) -> int:
    """How many live machines the group holds in the log now (read model plus its unapplied tail).
    Group deletion is rare; reading every machine's group is cheap next to what it protects."""
    after = await _checkpoint(conn, "machines")
    # every machine, not only this group's: a rename in the tail may move another group's into it
    rows = await (await conn.execute("SELECT machine_id, group_name FROM api.machines")).fetchall()
    group_of: dict[uuid.UUID, str | None] = {r[0]: r[1] for r in rows}
    for rec in await log.read_all(after=after, limit=TAIL, types=MACHINE_EVENTS, conn=conn, metadata=False):
        e = rec.event
        if isinstance(e, GroupRenamed):
            group_of = {m: (e.new_name if g == e.name else g) for m, g in group_of.items()}
        elif isinstance(e, MachineRegistered | MachineEdited):
            group_of[e.machine_id] = e.group
        elif isinstance(e, MachineDeleted):
            group_of[e.machine_id] = None
    return sum(1 for g in group_of.values() if g == name)
