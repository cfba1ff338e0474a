"""Poison events of a projection: set aside, recorded, counted -- never retried forever.

A projection that meets an event it cannot decode or apply (a NUL a PostgreSQL ``text`` column
refuses, a stored payload newer code no longer accepts, a bug) used to retry that batch forever,
and every later event of the read model waited behind it. Now the batch is applied inside a
savepoint; when it fails, it is applied again event by event so only the bad event is set aside in
``dpm_quarantine`` and the checkpoint moves past it. An admin lists, retries or skips entries
(``/admin/quarantine``, ``dpm admin quarantine``).

A lost connection is not poison: it propagates, and the runner retries the whole batch.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import TupleRow
from pydantic import ValidationError

from dpm_runtime.eventlog import Conn, decode_row
from dpm_schemas import E
from dpm_schemas.envelope import RecordedEvent

if TYPE_CHECKING:
    from dpm_runtime.projection import Projection

log = logging.getLogger(__name__)

ERROR_MAX = 500  # characters of the error kept per entry


@dataclass(frozen=True, slots=True)
class Poison:
    """An event a projection could not take, and why."""

    position: int
    event_id: uuid.UUID | None
    type: str
    error: str


@dataclass(frozen=True, slots=True)
class Entry:
    projection: str
    position: int
    event_id: uuid.UUID | None
    type: str
    error: str
    status: str
    attempts: int
    recorded_at: datetime


def describe(exc: BaseException) -> str:
    """A bounded, printable error text: the error may quote the very input that could not be stored."""
    if isinstance(exc, ValidationError):  # field and reason, not the input (which may be the poison)
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        text = f"ValidationError: {exc.title}: {where}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)[:ERROR_MAX]


def is_connection_loss(exc: BaseException) -> bool:
    """Failures that say nothing about the event: the batch is retried as a whole later."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def decode_rows(rows: Sequence[TupleRow]) -> tuple[list[RecordedEvent], list[Poison]]:
    """Decode a batch; a row that does not decode becomes poison instead of stopping the batch."""
    with contextlib.suppress(Exception):  # the fast path: a whole batch of good rows
        return [decode_row(row) for row in rows], []
    events, poison = [], []
    for row in rows:
        try:
            events.append(decode_row(row))
        except Exception as exc:
            poison.append(Poison(position=row[0], event_id=row[3], type=row[4], error=describe(exc)))
    return events, poison


async def apply_guarded(conn: Conn, p: Projection, schema: str, rows: Sequence[TupleRow]) -> list[Poison]:
    """Apply ``rows`` to ``schema``; return what could not be applied (the rest is applied).

    Must run inside a transaction: the batch, then each event on the slow path, gets a savepoint.
    """
    events, poison = decode_rows(rows)
    if not events:
        return poison
    try:
        async with conn.transaction():
            await p.apply(conn, schema, events)
        return poison
    except Exception as exc:
        if is_connection_loss(exc):
            raise
    for event in events:  # the slow path, only for a batch holding poison
        try:
            async with conn.transaction():
                await p.apply(conn, schema, [event])
        except Exception as exc:
            if is_connection_loss(exc):
                raise
            poison.append(Poison(event.position, event.event_id, event.type, describe(exc)))
    return sorted(poison, key=lambda x: x.position)


_UPSERT = (
    "INSERT INTO dpm_quarantine (projection, position, event_id, type, error) VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (projection, position) DO UPDATE SET error = excluded.error,"
    " attempts = dpm_quarantine.attempts + 1, recorded_at = now()"
)


async def record(conn: Conn, projection: str, poison: Sequence[Poison]) -> None:
    """Set ``poison`` aside (in the caller's transaction, with the checkpoint that moves past it)."""
    for item in poison:
        log.error(
            "projection %s: quarantined %s at position %d: %s",
            projection,
            item.type,
            item.position,
            item.error,
            extra={"projection": projection, "position": item.position, "event_type": item.type},
        )
    await conn.cursor().executemany(_UPSERT, [(projection, x.position, x.event_id, x.type, x.error) for x in poison])


async def replace_after_rebuild(conn: Conn, projection: str, poison: Sequence[Poison]) -> None:
    """A rebuild applied every event again: what applied now is no longer quarantined."""
    await conn.execute(
        "DELETE FROM dpm_quarantine WHERE projection = %s AND NOT (position = ANY(%s))",
        (projection, [x.position for x in poison]),
    )
    if poison:
        await record(conn, projection, poison)


async def count(conn: Conn, projection: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM dpm_quarantine WHERE projection = %s AND status <> 'skipped'", (projection,)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


_COLUMNS = "projection, position, event_id, type, error, status, attempts, recorded_at"


async def entries(conn: Conn, projection: str | None = None, limit: int = 1000) -> list[Entry]:
    sql = f"SELECT {_COLUMNS} FROM dpm_quarantine"
    params: tuple[object, ...] = (limit,)
    if projection is not None:
        sql += " WHERE projection = %s"
        params = (projection, limit)
    cur = await conn.execute(f"{sql} ORDER BY projection, position LIMIT %s", params)
    return [Entry(*row) for row in await cur.fetchall()]


async def entry(conn: Conn, projection: str, position: int, *, lock: bool = False) -> Entry:
    sql = f"SELECT {_COLUMNS} FROM dpm_quarantine WHERE projection = %s AND position = %s"
    cur = await conn.execute(sql + (" FOR UPDATE" if lock else ""), (projection, position))
    row = await cur.fetchone()
    if row is None:
        raise E.QUARANTINE_NOT_FOUND(projection=projection, position=position)
    return Entry(*row)


async def skip(conn: Conn, projection: str, position: int) -> Entry:
    """Leave the read model without the event; the entry stays, for the record, as ``skipped``."""
    await entry(conn, projection, position, lock=True)
    await conn.execute(
        "UPDATE dpm_quarantine SET status = 'skipped', resolved_at = now() WHERE projection = %s AND position = %s",
        (projection, position),
    )
    return await entry(conn, projection, position)


async def request_retry(conn: Conn, projection: str, position: int) -> Entry:
    """Ask the service that owns ``projection`` to apply the event again (its runner looks for such
    requests between batches): any replica of the api can ask for any service's read model."""
    await entry(conn, projection, position, lock=True)
    await conn.execute(
        "UPDATE dpm_quarantine SET status = 'retry' WHERE projection = %s AND position = %s AND status <> 'skipped'",
        (projection, position),
    )
    return await entry(conn, projection, position)


async def retry_requests(conn: Conn, projection: str) -> list[int]:
    cur = await conn.execute(
        "SELECT position FROM dpm_quarantine WHERE projection = %s AND status = 'retry' ORDER BY position",
        (projection,),
    )
    return [int(row[0]) for row in await cur.fetchall()]


async def resolve(conn: Conn, projection: str, position: int) -> None:
    await conn.execute("DELETE FROM dpm_quarantine WHERE projection = %s AND position = %s", (projection, position))


async def note_failure(conn: Conn, projection: str, position: int, error: str) -> None:
    await conn.execute(
        "UPDATE dpm_quarantine SET error = %s, attempts = attempts + 1, recorded_at = now(), status = 'quarantined'"
        " WHERE projection = %s AND position = %s",
        (error, projection, position),
    )
