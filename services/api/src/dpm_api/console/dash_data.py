"""The dashboard's figures: a handful of bounded queries of the api's read models, and of the log's
committed backups.

Executions are counted among the rows still worth counting (not completed, not cleared: open work
and failures nobody cleared), at most ``OPEN_CAP`` of them, in one query. Throughput comes from the
one transfer fact the log stores with its size, ImageCaptured (a backup's atomic commit); restores and
progress are ChunkSent signals, NATS only (DESIGN.md §3), so no history of them exists to chart. The
newest ``CAPTURES`` of them are read through the log's ``(type, position)`` index."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from dpm_runtime.eventlog import Conn
from dpm_schemas.codec import decode_payload
from dpm_schemas.events import ImageCaptured

OPEN_CAP = 100_000  # open executions counted at most; more shows as "100000+"
LISTED = 10  # items per attention list
CAPTURES = 500  # newest committed backups read for the last hour's chart
RUNNING = ("running", "powering-on", "rebooting", "suspending")  # holding a machine, step under way
WAITING = ("queued", "waiting")  # for a slot, a not-before time, or a multicast session
INTERRUPTS = "(x.state = 'suspending' OR (x.state = 'suspended' AND x.code = 'unconfirmed'))"


@dataclass(frozen=True, slots=True)
class Counts:
    running: int
    failed: int
    waiting: int
    interrupts: int
    capped: bool  # OPEN_CAP rows were counted: the figures are lower bounds


@dataclass(frozen=True, slots=True)
class Fleet:
    total: int
    online: int
    outdated: int


@dataclass(frozen=True, slots=True)
class Item:
    """An execution that needs someone: failed and not cleared, or an interrupt not confirmed."""

    execution_id: uuid.UUID
    run_id: uuid.UUID
    machine_id: uuid.UUID
    machine: str | None  # None when the machine was deleted since
    scenario: str
    state: str
    code: str | None
    reason: str | None
    at: datetime | None

    @property
    def href(self) -> str:
        """The machine's executions in this state: where its error is cleared."""
        return "/console/executions?" + urlencode({"machine": str(self.machine_id), "state": self.state})


@dataclass(frozen=True, slots=True)
class Agent:
    machine_id: uuid.UUID
    name: str
    version: str
    online: bool

    @property
    def href(self) -> str:
        """The machine list searched for it: its agent version flagged, its actions at hand."""
        return "/console/machines?" + urlencode({"q": self.name})


@dataclass(frozen=True, slots=True)
class Figures:
    counts: Counts
    fleet: Fleet
    failed: list[Item]
    interrupts: list[Item]
    outdated: list[Agent]
    captures: list[tuple[datetime, int]]  # (recorded at, bytes captured), newest first


def figure(n: int, capped: bool) -> str:
    """A count as shown: ``1,234``, or ``100,000+`` when counting stopped at the cap."""
    return f"{n:,}+" if capped else f"{n:,}"


async def counts(conn: Conn) -> Counts:
    sql = (
        "SELECT count(*) FILTER (WHERE state = ANY(%s)), count(*) FILTER (WHERE state = 'failed'),"
        " count(*) FILTER (WHERE state = ANY(%s)), count(*) FILTER (WHERE " + INTERRUPTS.replace("x.", "") + "),"
        " count(*) FROM (SELECT state, code FROM api.executions WHERE state <> 'completed' AND NOT cleared"
        " LIMIT %s) open"
    )
    row = await (await conn.execute(sql, (list(RUNNING), list(WAITING), OPEN_CAP))).fetchone()
    running, failed, waiting, interrupts, seen = row or (0, 0, 0, 0, 0)
    return Counts(running, failed, waiting, interrupts, capped=seen >= OPEN_CAP)


async def attention(conn: Conn) -> tuple[list[Item], list[Item]]:
    """The newest failed executions nobody cleared, and the interrupts not confirmed (one query)."""
    columns = "x.execution_id, x.run_id, x.machine_id, m.name, x.scenario, x.state, x.code, x.reason"
    joined = "FROM api.executions x LEFT JOIN api.machines m ON m.machine_id = x.machine_id WHERE NOT x.cleared AND"
    order = "ORDER BY coalesce(x.ended_at, x.started_at, x.queued_at) DESC, x.execution_id LIMIT %s"
    at = "coalesce(x.ended_at, x.started_at, x.queued_at)"
    sql = (
        f"(SELECT 'failed', {columns}, {at} {joined} x.state = 'failed' {order})"
        f" UNION ALL (SELECT 'interrupt', {columns}, {at} {joined} {INTERRUPTS} {order})"
    )
    rows = await (await conn.execute(sql, (LISTED, LISTED))).fetchall()
    failed = [Item(*r[1:]) for r in rows if r[0] == "failed"]
    return failed, [Item(*r[1:]) for r in rows if r[0] == "interrupt"]


async def fleet(conn: Conn, version: str) -> tuple[Fleet, list[Agent]]:
    """Machines online of all, and the agents at another version than the server's (as the machine
    list flags them 'outdated'), the first LISTED by name."""
    outdated = "agent_version IS NOT NULL AND agent_version <> %s"
    sql = f"SELECT count(*), count(*) FILTER (WHERE online), count(*) FILTER (WHERE {outdated}) FROM api.machines"
    total, online, old = await (await conn.execute(sql, (version,))).fetchone() or (0, 0, 0)
    sql = f"SELECT machine_id, name, agent_version, online FROM api.machines WHERE {outdated}"
    rows = await (await conn.execute(sql + " ORDER BY name, machine_id LIMIT %s", (version, LISTED))).fetchall()
    return Fleet(total, online, old), [Agent(*r) for r in rows]


async def captures(conn: Conn) -> list[tuple[datetime, int]]:
    """The newest committed backups: when the log recorded each, and the bytes it captured."""
    sql = "SELECT schema_version, data, recorded_at FROM events WHERE type = %s ORDER BY position DESC LIMIT %s"
    rows = await (await conn.execute(sql, (ImageCaptured.wire_name, CAPTURES), binary=True)).fetchall()
    out: list[tuple[datetime, int]] = []
    for version, data, recorded_at in rows:
        event: Any = decode_payload(ImageCaptured.wire_name, version, data)
        out.append((recorded_at, int(event.captured_bytes)))
    return out


async def load(conn: Conn, version: str) -> Figures:
    machines, agents = await fleet(conn, version)
    failed, interrupts = await attention(conn)
    return Figures(await counts(conn), machines, failed, interrupts, agents, await captures(conn))
