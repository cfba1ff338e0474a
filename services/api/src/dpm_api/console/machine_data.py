"""The read-model queries of the machine pages, each one statement: a page of machines costs the same
few queries whatever its size (the current executions of the page's machines are one query over
``executions_machine``, not one per row)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from dpm_api import images
from dpm_api.adapters import executions
from dpm_api.adapters.executions import ExecutionFilter
from dpm_api.console import listing
from dpm_runtime.eventlog import Conn
from dpm_schemas.events.groups import NEW_MACHINES

ENDED = ("completed", "failed", "suspended")
HISTORY = 500  # the newest executions a machine's page lists (the executions page has the rest)


@dataclass(frozen=True, slots=True)
class Current:
    """A machine's execution at a glance: its latest open one, else its latest failure not yet cleared."""

    execution_id: uuid.UUID
    scenario: str
    state: str
    percent: int | None
    code: str | None

    @property
    def open(self) -> bool:
        return self.state not in ENDED


async def current(conn: Conn, machine_ids: list[uuid.UUID]) -> dict[uuid.UUID, Current]:
    """One query for a page of machines: per machine its open execution (newest first), or else its
    newest failed or suspended one that was not cleared."""
    if not machine_ids:
        return {}
    cur = await conn.execute(
        "SELECT DISTINCT ON (machine_id) machine_id, execution_id, scenario, state, percent, code"
        " FROM api.executions WHERE machine_id = ANY(%s) AND state <> 'completed' AND NOT cleared"
        " ORDER BY machine_id, state IN ('failed', 'suspended'), queued_at DESC",
        (machine_ids,),
    )
    return {r[0]: Current(*r[1:]) for r in await cur.fetchall()}


async def group_tree(conn: Conn) -> list[listing.GroupNode]:
    """Every group with its machine count (two queries, whatever the fleet's size)."""
    cur = await conn.execute("SELECT name FROM api.groups ORDER BY name LIMIT 2000")
    names = [r[0] for r in await cur.fetchall()] + [NEW_MACHINES]
    cur = await conn.execute("SELECT group_name, count(*) FROM api.machines GROUP BY group_name LIMIT 2000")
    counts = {r[0]: r[1] for r in await cur.fetchall()}
    return listing.group_tree(names, counts)


async def group_names(conn: Conn) -> list[str]:
    cur = await conn.execute("SELECT name FROM api.groups ORDER BY name LIMIT 2000")
    return sorted({NEW_MACHINES, *(r[0] for r in await cur.fetchall())})


async def scenario_names(conn: Conn) -> list[str]:
    """What the bulk form's "Run scenario" offers."""
    cur = await conn.execute("SELECT name FROM api.scenarios WHERE NOT deleted ORDER BY name LIMIT 1000")
    return [r[0] for r in await cur.fetchall()]


async def names(conn: Conn, machine_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    cur = await conn.execute("SELECT machine_id, name FROM api.machines WHERE machine_id = ANY(%s)", (machine_ids,))
    return {r[0]: r[1] for r in await cur.fetchall()}


async def detail(conn: Conn, machine_id: uuid.UUID) -> dict[str, Any]:
    """What a machine's page shows besides the machine itself: inventory, disks, history."""
    cur = await conn.execute(
        "SELECT os, kernel, packages, reported_at FROM api.inventories WHERE machine_id = %s", (machine_id,)
    )
    inventory = await cur.fetchone()
    disks = await images.disks_of(conn, machine_id)
    history = await executions.list_executions(conn, ExecutionFilter(machine=str(machine_id), limit=HISTORY))
    return {"inventory": inventory, "disks": disks, "history": history}
