"""The image catalogue: the list operators see (a projection of the imager's facts), and the
transfers the api opens -- the only way to get a token the imager's data plane accepts."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dpm_api.domain.images import MachineFacts, check_open, exists, holders, render_name, revocations
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog, StreamConflict
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    DiskLayoutReported,
    ImageCaptured,
    ImageDeleted,
    ImageVerified,
    StoreCollected,
    StoreCollectRequested,
    StoreSpaceReported,
    TransferOpened,
)
from dpm_schemas.events.imaging import STORE_ID, TransferDirection, image_id
from dpm_schemas.ids import stream_id


class ImageList:
    name = "images"
    schema = "api"
    tables = ("images",)
    event_types = (ImageCaptured.wire_name, ImageDeleted.wire_name, ImageVerified.wire_name)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".images (image_id uuid PRIMARY KEY, name text NOT NULL UNIQUE,'
            " manifest text NOT NULL, captured_at timestamptz NOT NULL, source text NOT NULL, mode text NOT NULL,"
            " size_bytes bigint NOT NULL, captured_bytes bigint NOT NULL, stored_bytes bigint NOT NULL,"
            " chunk_count integer NOT NULL, sector_size integer NOT NULL, label text, digest text NOT NULL,"
            " machine_id uuid, execution_id uuid, verified_at timestamptz, verified_ok boolean,"
            " corrupt text[], position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        t = f'"{schema}".images'
        for rec in events:
            e = rec.event
            if isinstance(e, ImageCaptured):
                await conn.execute(
                    f"INSERT INTO {t} (image_id, name, manifest, captured_at, source, mode, size_bytes,"
                    " captured_bytes, stored_bytes, chunk_count, sector_size, label, digest, machine_id,"
                    " execution_id, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (image_id) DO UPDATE SET manifest = excluded.manifest,"
                    " captured_at = excluded.captured_at, source = excluded.source, mode = excluded.mode,"
                    " size_bytes = excluded.size_bytes, captured_bytes = excluded.captured_bytes,"
                    " stored_bytes = excluded.stored_bytes, chunk_count = excluded.chunk_count,"
                    " sector_size = excluded.sector_size, label = excluded.label, digest = excluded.digest,"
                    " machine_id = excluded.machine_id, execution_id = excluded.execution_id,"
                    " verified_at = NULL, verified_ok = NULL, corrupt = NULL, position = excluded.position",
                    (
                        *(e.image_id, e.image, e.manifest, rec.occurred_at, e.source, e.mode, e.size_bytes),
                        *(e.captured_bytes, e.stored_bytes, e.chunk_count, e.sector_size, e.label, e.digest),
                        *(e.machine_id, e.execution_id, rec.position),
                    ),
                )
            elif isinstance(e, ImageDeleted):
                await conn.execute(f"DELETE FROM {t} WHERE image_id = %s AND position < %s", (e.image_id, rec.position))
            elif isinstance(e, ImageVerified):
                await conn.execute(
                    f"UPDATE {t} SET verified_at = %s, verified_ok = %s, corrupt = %s"
                    " WHERE image_id = %s AND manifest = %s",
                    (rec.occurred_at, e.ok, list(e.corrupt), e.image_id, e.manifest),
                )


class DiskLayouts:
    """The disk viewer: each machine's disks as its latest disk configuration check read them."""

    name = "disk_layouts"
    schema = "api"
    tables = ("disk_layouts",)
    event_types = (DiskLayoutReported.wire_name,)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".disk_layouts (machine_id uuid PRIMARY KEY, disks jsonb NOT NULL,'
            " execution_id uuid, checked_at timestamptz NOT NULL, position bigint NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            assert isinstance(e, DiskLayoutReported)
            await conn.execute(
                f'INSERT INTO "{schema}".disk_layouts (machine_id, disks, execution_id, checked_at, position)'
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET disks = excluded.disks,"
                " execution_id = excluded.execution_id, checked_at = excluded.checked_at, position = excluded.position"
                f' WHERE "{schema}".disk_layouts.position < excluded.position',
                (e.machine_id, e.disks_json, e.execution_id, rec.occurred_at, rec.position),
            )


class StoreSpace:
    """The image store's room as the imager last reported it (one row), for the checks before waking
    a backup (``dpm_api.prewake``)."""

    name = "store_space"
    schema = "api"
    tables = ("store_space",)
    event_types = (StoreSpaceReported.wire_name,)

    def ddl(self, schema: str) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS "{schema}".store_space (one boolean PRIMARY KEY DEFAULT true CHECK (one),'
            " free_bytes bigint NOT NULL, free_factor double precision NOT NULL, reported_at timestamptz NOT NULL);"
        )

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            e = rec.event
            assert isinstance(e, StoreSpaceReported)
            await conn.execute(
                f'INSERT INTO "{schema}".store_space (free_bytes, free_factor, reported_at) VALUES (%s, %s, %s)'
                " ON CONFLICT (one) DO UPDATE SET free_bytes = excluded.free_bytes,"
                " free_factor = excluded.free_factor, reported_at = excluded.reported_at",
                (e.free_bytes, e.free_factor, rec.occurred_at),
            )


async def disks_of(conn: Conn, machine_id: uuid.UUID) -> dict[str, Any] | None:
    sql = "SELECT disks, execution_id, checked_at FROM api.disk_layouts WHERE machine_id = %s"
    row = await (await conn.execute(sql, (machine_id,))).fetchone()
    if row is None:
        return None
    return {"disks": row[0], "execution_id": str(row[1]) if row[1] else None, "checked_at": row[2].isoformat()}


COLUMNS = (
    "name, manifest, captured_at, source, mode, size_bytes, captured_bytes, stored_bytes, chunk_count, sector_size,"
    " label, digest, machine_id, execution_id, verified_at, verified_ok, corrupt"
)


def _row(row: Sequence[Any]) -> dict[str, Any]:
    keys = [k.strip() for k in COLUMNS.split(",")]
    return {k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in zip(keys, row, strict=True)}


async def list_images(conn: Conn) -> list[dict[str, Any]]:
    rows = await (await conn.execute(f"SELECT {COLUMNS} FROM api.images ORDER BY name")).fetchall()
    return [_row(r) for r in rows]


async def get_image(conn: Conn, name: str) -> dict[str, Any]:
    row = await (await conn.execute(f"SELECT {COLUMNS} FROM api.images WHERE name = %s", (name,))).fetchone()
    if row is None:
        raise E.IMAGE_NOT_FOUND(image=name)
    return _row(row)


@dataclass(frozen=True)
class Opened:
    transfer_id: uuid.UUID
    token: str
    image: str
    direction: TransferDirection
    expires_at: datetime


async def open_transfer(
    eventlog: EventLog,
    conn: Conn,
    template: str,
    direction: TransferDirection,
    *,
    machine: MachineFacts | None,
    machine_id: uuid.UUID | None,
    execution_id: uuid.UUID | None,
    ttl: float,
    actor: str,
    lease: float | None = None,
) -> Opened:
    """A transfer's token, idle for at most ``ttl`` seconds -- a backup's for at most ``lease``: its
    lock on the name lasts as long (domain.images says why)."""
    name = render_name(template, machine)
    iid = image_id(name)
    catalog = stream_id(subjects.CATALOG, iid)
    catalog_events = await eventlog.read_stream(catalog, conn=conn)
    image_events = await eventlog.read_stream(stream_id(subjects.IMAGE, iid), conn=conn)
    now = datetime.now(UTC)
    check_open(name, direction, catalog_events, image_events, now)
    idle = min(ttl, lease) if direction is TransferDirection.BACKUP and lease is not None else ttl
    token, opened = _new_transfer(name, direction, now + timedelta(seconds=idle), idle, machine_id, execution_id)
    # A backup must see the stream as it decided on it (one writer per name); readers need no such guard.
    version = (
        (catalog_events[-1].stream_version if catalog_events else 0) if direction is TransferDirection.BACKUP else None
    )
    try:
        await eventlog.append(catalog, version, [NewEvent(opened, command_metadata(actor))], conn=conn)
    except StreamConflict:  # another request opened (or deleted) this image at the same moment
        raise E.IMAGE_BUSY(image=name, transfer="(opened concurrently)") from None
    return Opened(opened.transfer_id, token, name, direction, opened.expires_at)


def _new_transfer(
    name: str,
    direction: TransferDirection,
    expires_at: datetime,
    idle: float,
    machine_id: uuid.UUID | None,
    execution_id: uuid.UUID | None,
) -> tuple[str, TransferOpened]:
    """A fresh token and the TransferOpened that records its SHA-256 (never the token itself)."""
    token = secrets.token_urlsafe(32)
    return token, TransferOpened(
        transfer_id=uuid.uuid4(),
        image_id=image_id(name),
        image=name,
        direction=direction,
        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        expires_at=expires_at,
        machine_id=machine_id,
        execution_id=execution_id,
        renew_seconds=idle,  # an idle expiry: the imager renews the token as it is used
    )


async def delete_image(eventlog: EventLog, conn: Conn, name: str, *, actor: str) -> int:
    iid = image_id(name)
    catalog = stream_id(subjects.CATALOG, iid)
    catalog_events = await eventlog.read_stream(catalog, conn=conn)
    if not exists(await eventlog.read_stream(stream_id(subjects.IMAGE, iid), conn=conn), catalog_events):
        raise E.IMAGE_NOT_FOUND(image=name)
    version = catalog_events[-1].stream_version if catalog_events else 0
    event = ImageDeleted(image_id=iid, image=name)
    result = await eventlog.append(catalog, version, [NewEvent(event, command_metadata(actor))], conn=conn)
    return result.position


async def unlock_image(eventlog: EventLog, conn: Conn, name: str, *, actor: str) -> list[str]:
    """Revoke the backups holding ``name`` (TransferAborted in the catalog stream, the api's own): the
    transfer ids released, none if no backup held it."""
    iid = image_id(name)
    catalog = stream_id(subjects.CATALOG, iid)
    catalog_events = await eventlog.read_stream(catalog, conn=conn)
    image_events = await eventlog.read_stream(stream_id(subjects.IMAGE, iid), conn=conn)
    revoked = revocations(holders(catalog_events, image_events, datetime.now(UTC)), actor)
    if revoked:
        version = catalog_events[-1].stream_version if catalog_events else 0
        try:
            await eventlog.append(catalog, version, [NewEvent(e, command_metadata(actor)) for e in revoked], conn=conn)
        except StreamConflict:  # a transfer opened (or the image was deleted) at the same moment
            raise E.IMAGE_BUSY(image=name, transfer="(changed concurrently; unlock again)") from None
    return [str(e.transfer_id) for e in revoked]


async def request_collection(eventlog: EventLog, conn: Conn, *, actor: str) -> uuid.UUID:
    """Ask the imager to collect the chunk store now (``dpm images gc``); the request's id."""
    request = StoreCollectRequested(request_id=uuid.uuid4())
    stream = stream_id(subjects.CATALOG, STORE_ID)
    await eventlog.append(stream, ANY_VERSION, [NewEvent(request, command_metadata(actor))], conn=conn)
    return request.request_id


async def collection_result(eventlog: EventLog, request_id: uuid.UUID, timeout: float) -> dict[str, Any] | None:
    """What the imager's collection for ``request_id`` removed, once it says (None: not within ``timeout``)."""
    deadline = time.monotonic() + timeout
    stream = stream_id(subjects.IMAGE, STORE_ID)
    while True:
        for rec in reversed(await eventlog.read_stream(stream)):
            if isinstance(rec.event, StoreCollected) and rec.event.request_id == request_id:
                e = rec.event
                return {"chunks": e.chunks, "bytes": e.bytes, "manifests": e.manifests, "temporary": e.temporary}
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.25)
