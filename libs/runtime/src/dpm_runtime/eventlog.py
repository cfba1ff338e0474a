"""The PostgreSQL event log: append with optimistic concurrency, read a stream, read all in order.

All writes go through the ``dpm_append`` SQL function (sql/0001_event_log.sql), which serialises
appenders so positions are gap-free in commit order. An append can join the caller's transaction
(``conn=``), which is how a consumer writes its reaction and its tracking row atomically.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from dpm_runtime.telemetry import current_traceparent
from dpm_schemas import E, Event
from dpm_schemas.codec import decode_payload, encode_payload
from dpm_schemas.envelope import Metadata, NewEvent, RecordedEvent
from dpm_schemas.errors import DpmError

Conn = psycopg.AsyncConnection[TupleRow]

_COLUMNS = "position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at"


class StreamConflict(DpmError):
    """The stream was not at the expected version: someone else appended first. Never retried blindly."""

    def __init__(self, stream_id: str, expected: int | None, actual: int | None) -> None:
        super().__init__(E.STREAM_CONFLICT, {"stream_id": stream_id, "expected": expected, "actual": actual})
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream_version: int  # version of the last appended event
    position: int  # global position of the last appended event


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A log row as stored, for the relay: it forwards payload bytes without decoding them."""

    position: int
    stream_id: str
    stream_version: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    data: bytes
    metadata: dict[str, Any]
    recorded_at: datetime


_APPEND_ONE = "SELECT * FROM dpm_append_one(%s, %s, %s, %s, %s, %s, %s)"
_APPEND_MANY = "SELECT * FROM dpm_append(%s, %s, %s, %s, %s, %s, %s)"

_UNREAD = Metadata.unread()

ANY_VERSION: int | None = None
NO_STREAM = 0


class EventLog:
    """Appends to and reads from the ``events`` table through a connection pool."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        conn: Conn | None = None,
    ) -> AppendResult:
        """Append ``events`` to ``stream_id`` if it is at ``expected_version`` (None: any, 0: new stream).

        Raises ``StreamConflict`` otherwise. With ``conn`` the append joins that open transaction
        and becomes visible when the caller commits.
        """
        if not events:
            raise ValueError("append needs at least one event")
        params = self._params(stream_id, expected_version, events)
        if conn is not None:
            return await self._call(conn, stream_id, expected_version, params)
        async with self._pool.connection() as own:
            if own.autocommit:  # one statement is one transaction: a single round trip
                return await self._call(own, stream_id, expected_version, params)
            async with own.transaction():
                return await self._call(own, stream_id, expected_version, params)

    @staticmethod
    def _params(stream_id: str, expected: int | None, events: Sequence[NewEvent]) -> tuple[str, tuple[Any, ...]]:
        """The SQL call and its parameters: the scalar single-event function, or the array one."""
        traceparent = current_traceparent()
        metadata = []
        for new in events:
            if new.event.transient:
                raise E.TRANSIENT_EVENT(type=new.event.wire_name)
            meta = new.metadata.to_dict()
            if meta["traceparent"] is None:
                meta["traceparent"] = traceparent
            metadata.append(meta)
        if len(events) == 1:
            (new,) = events
            return _APPEND_ONE, (
                stream_id,
                expected,
                new.event_id,
                new.event.wire_name,
                new.event.wire_version,
                encode_payload(new.event),
                Jsonb(metadata[0]),
            )
        return _APPEND_MANY, (
            stream_id,
            expected,
            [new.event_id for new in events],
            [new.event.wire_name for new in events],
            [new.event.wire_version for new in events],
            [encode_payload(new.event) for new in events],
            Jsonb(metadata),
        )

    @staticmethod
    async def _call(
        conn: Conn, stream_id: str, expected: int | None, call: tuple[str, tuple[Any, ...]]
    ) -> AppendResult:
        sql, params = call
        try:
            cur = await conn.execute(sql, params)
        except psycopg.Error as exc:
            if exc.sqlstate == "DPM01":
                actual = int(exc.diag.message_detail) if exc.diag.message_detail else None
                raise StreamConflict(stream_id, expected, actual) from None
            if exc.sqlstate == "DPM03":  # another service's category (migration 0004): never retried
                role = (exc.diag.message_primary or "").split(" ")[1:2] or ["?"]
                raise E.STREAM_NOT_OWNED(role=role[0], stream_id=stream_id, category=exc.diag.message_detail) from None
            if isinstance(exc, psycopg.errors.UniqueViolation):
                raise StreamConflict(stream_id, expected, None) from None
            raise
        row = await cur.fetchone()
        assert row is not None
        return AppendResult(stream_version=int(row[0]), position=int(row[1]))

    async def read_stream(
        self, stream_id: str, *, after_version: int = 0, conn: Conn | None = None
    ) -> list[RecordedEvent]:
        """One stream in version order; with ``conn`` inside the caller's transaction."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE stream_id = %s AND stream_version > %s ORDER BY stream_version"
        if conn is not None:
            rows = await (await conn.execute(sql, (stream_id, after_version))).fetchall()
        else:
            async with self._pool.connection() as own:
                rows = await (await own.execute(sql, (stream_id, after_version))).fetchall()
        return [decode_row(row) for row in rows]

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        types: Sequence[str] | None = None,
        conn: Conn | None = None,
        metadata: bool = True,
    ) -> list[RecordedEvent]:
        """Events after position ``after`` in position order, at most ``limit``, optionally of ``types``.

        ``metadata=False`` skips loading the metadata column (``Metadata.unread()`` stands in): a
        projection rebuild decodes millions of events and needs only their payloads.
        """
        rows = await self._read_rows(after=after, limit=limit, types=types, conn=conn, metadata=metadata)
        return [decode_row(row) for row in rows]

    async def batches(
        self, *, after: int = 0, batch_size: int = 5000, types: Sequence[str] | None = None
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Every event after ``after`` in batches, up to the head at the time each batch is read."""
        while batch := await self.read_all(after=after, limit=batch_size, types=types):
            yield batch
            after = batch[-1].position

    async def head(self, conn: Conn | None = None) -> int:
        """The highest committed position (0 for an empty log)."""
        sql = "SELECT coalesce(max(position), 0) FROM events"
        if conn is not None:
            row = await (await conn.execute(sql)).fetchone()
        else:
            async with self._pool.connection() as own:
                row = await (await own.execute(sql)).fetchone()
        assert row is not None
        return int(row[0])

    async def _read_rows(
        self, *, after: int, limit: int, types: Sequence[str] | None, conn: Conn | None, metadata: bool = True
    ) -> list[TupleRow]:
        if conn is not None:
            return await select_rows(conn, after=after, limit=limit, types=types, metadata=metadata)
        async with self._pool.connection() as own:
            return await select_rows(own, after=after, limit=limit, types=types, metadata=metadata)


async def select_rows(
    conn: Conn, *, after: int, limit: int, types: Sequence[str] | None = None, metadata: bool = True
) -> list[TupleRow]:
    """Rows after position ``after`` in position order, through an open connection."""
    columns = _COLUMNS if metadata else _COLUMNS.replace("metadata", "NULL")
    if types is None:
        sql = f"SELECT {columns} FROM events WHERE position > %s ORDER BY position LIMIT %s"
        params: tuple[Any, ...] = (after, limit)
    else:
        sql = f"SELECT {columns} FROM events WHERE position > %s AND type = ANY(%s) ORDER BY position LIMIT %s"
        params = (after, list(types), limit)
    # Binary results: bytea payloads arrive as-is instead of hex text (a third of a rebuild's read cost).
    return await (await conn.execute(sql, params, binary=True)).fetchall()


async def last_before(conn: Conn, stream_id: str, types: Sequence[str], *, before: int) -> RecordedEvent | None:
    """The last event of ``types`` on ``stream_id`` below position ``before``. The log below a
    position never changes, so a projection may read it and stay the same live and on rebuild."""
    sql = (
        f"SELECT {_COLUMNS} FROM events WHERE stream_id = %s AND type = ANY(%s) AND position < %s"
        " ORDER BY stream_version DESC LIMIT 1"
    )
    row = await (await conn.execute(sql, (stream_id, list(types), before), binary=True)).fetchone()
    return decode_row(row) if row is not None else None


async def read_raw(conn: Conn, *, after: int, limit: int) -> list[RawEvent]:
    return [RawEvent(*row) for row in await select_rows(conn, after=after, limit=limit)]


def decode_row(row: TupleRow) -> RecordedEvent:
    position, stream_id, stream_version, event_id, type_, version, data, metadata, recorded_at = row
    event = cast(Event, decode_payload(type_, version, data))  # the log holds events only (append checks)
    meta = Metadata.from_dict(metadata) if metadata is not None else _UNREAD
    # positional: this runs once per event in a rebuild
    return RecordedEvent(
        event_id, type_, event.wire_version, stream_id, stream_version, position, recorded_at, meta, event
    )
