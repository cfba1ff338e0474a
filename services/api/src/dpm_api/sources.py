"""Package sources on the api side (issue 14): save, remove and "sync now" (``source-<id>``, the
api's stream; the id is named by the source's name, so two operators saving one new name make one
source), and the list operators read, a projection of those events and of the updater's
SourceSynced (``sync-<id>``) with each source's last sync: ok, code, message, at, counts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from dpm_api.domain import sources as rules
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import NO_STREAM, Conn, EventLog, StreamConflict
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.base import Event
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import SourceRemoved, SourceSaved, SourceSynced, SourceSyncRequested
from dpm_schemas.ids import NAMESPACE, stream_id

TABLE = "api.sources"


def source_id_of(name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"source:{name}")


def saved_of(fields: dict[str, Any]) -> SourceSaved:
    """The SourceSaved of an operator's settings, every one checked first with its own code."""
    name = fields["name"]
    rules.check_name(name)
    fields = {**fields, "kind": fields.get("kind") or "deb"}
    rules.check_kind(name, fields["kind"])
    fields |= rules.kind_defaults(name, fields)
    rules.check_url(name, "url", fields["url"])
    if fields.get("proxy") is not None:
        rules.check_url(name, "proxy", fields["proxy"], proxy=True)
    deb = fields["kind"] == "deb"
    if deb:
        rules.check_plain(name, "suite", [fields["suite"]])
        rules.check_plain(name, "components", fields["components"])
    rules.check_plain(name, "architectures", fields["architectures"], at_least=1 if deb else 0)
    rules.check_include(name, fields["include"])
    rules.check_key(name, fields.get("key"))
    tuples = {k: tuple(fields[k]) for k in ("components", "architectures", "include")}
    return SourceSaved(**{**fields, **tuples, "source_id": source_id_of(name)})


async def _live(log: EventLog, conn: Conn, name: str) -> tuple[uuid.UUID, int, bool]:
    """(source id, stream version, whether the source exists now)."""
    source_id = source_id_of(name)
    history = await log.read_stream(stream_id(subjects.SOURCE, source_id), conn=conn)
    kept = [r.event for r in history if not isinstance(r.event, SourceSyncRequested)]
    version = history[-1].stream_version if history else NO_STREAM
    return source_id, version, bool(kept) and isinstance(kept[-1], SourceSaved)


async def save(log: EventLog, conn: Conn, saved: SourceSaved, *, actor: str) -> int:
    _, version, _ = await _live(log, conn, saved.name)
    return await _append(log, conn, saved.name, version, saved, actor)


async def remove(log: EventLog, conn: Conn, name: str, *, actor: str) -> int:
    source_id, version, live = await _live(log, conn, name)
    if not live:
        raise E.SOURCE_NOT_FOUND(name=name)
    return await _append(log, conn, name, version, SourceRemoved(source_id=source_id, name=name), actor)


async def request_sync(log: EventLog, conn: Conn, name: str, *, actor: str) -> uuid.UUID:
    source_id, version, live = await _live(log, conn, name)
    if not live:
        raise E.SOURCE_NOT_FOUND(name=name)
    event = SourceSyncRequested(source_id=source_id, request_id=uuid.uuid4())
    await _append(log, conn, name, version, event, actor)
    return event.request_id


async def _append(log: EventLog, conn: Conn, name: str, version: int, event: Event, actor: str) -> int:
    """At the version the request read: a concurrent change of the source is DPM-E297."""
    try:
        async with conn.transaction():
            done = await log.append(stream_id(subjects.SOURCE, source_id_of(name)), version,
                                    [NewEvent(event, command_metadata(actor))], conn=conn)  # fmt: skip
    except StreamConflict:
        raise E.SOURCE_CHANGED(name=name) from None
    return done.position


class SourceList:
    name = "source_list"
    schema = "api"
    tables = ("sources",)
    event_types = (SourceSaved.wire_name, SourceRemoved.wire_name, SourceSynced.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".sources (source_id uuid PRIMARY KEY, name text NOT NULL UNIQUE,'
            " definition jsonb NOT NULL, last_sync_id uuid, last_ok boolean, last_code text, last_message text,"
            " last_at timestamptz, counts jsonb, offered_total bigint NOT NULL DEFAULT 0, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        t = f'"{schema}".sources'
        for rec in events:
            e = rec.event
            if isinstance(e, SourceSaved):
                await conn.execute(
                    f"INSERT INTO {t} (source_id, name, definition, position) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (source_id) DO UPDATE SET definition = excluded.definition,"
                    " position = excluded.position",
                    (e.source_id, e.name, e.model_dump_json(), rec.position),
                )
            elif isinstance(e, SourceRemoved):
                await conn.execute(f"DELETE FROM {t} WHERE source_id = %s", (e.source_id,))
            elif isinstance(e, SourceSynced):
                await conn.execute(
                    f"UPDATE {t} SET last_sync_id = %s, last_ok = %s, last_code = %s, last_message = %s, last_at = %s,"
                    " counts = %s, offered_total = offered_total + %s, position = %s WHERE source_id = %s",
                    (
                        e.sync_id,
                        e.ok,
                        e.code,
                        e.message,
                        e.at,
                        e.counts.model_dump_json(),
                        len(e.offered),
                        rec.position,
                        e.source_id,
                    ),
                )


_COLUMNS = "definition, last_sync_id, last_ok, last_code, last_message, last_at, counts, offered_total"


async def list_sources(conn: Conn) -> list[dict[str, Any]]:
    rows = await (await conn.execute(f"SELECT {_COLUMNS} FROM {TABLE} ORDER BY name")).fetchall()
    return [_view(*r) for r in rows]


async def get_source(conn: Conn, name: str) -> dict[str, Any]:
    row = await (await conn.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE name = %s", (name,))).fetchone()
    if row is None:
        raise E.SOURCE_NOT_FOUND(name=name)
    return _view(*row, with_key=True)


def _view(definition: dict[str, Any], sync_id: uuid.UUID | None, ok: bool | None, code: str | None,
          message: str | None, at: Any, counts: dict[str, int] | None, offered_total: int, *,
          with_key: bool = False) -> dict[str, Any]:  # fmt: skip
    shown = {k: v for k, v in definition.items() if k != "key" or with_key}
    last = None
    if ok is not None:
        last = {"sync_id": str(sync_id), "ok": ok, "code": code, "message": message, "at": at.isoformat()}
        last["counts"] = counts
    # "kind": a row folded from a SourceSaved older than kinds has none (it is a deb source)
    return {"kind": "deb", **shown, "signed": definition.get("key") is not None, "last_sync": last,
            "offered_total": offered_total}  # fmt: skip
