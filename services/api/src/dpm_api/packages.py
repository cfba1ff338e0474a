"""Packages as operators see them: the catalogue (a projection of PackageRegistered/PackageRemoved),
the uploads the api opens (the only way to get a token the updater's data plane accepts), the
registration of a revision, and the machines' inventories the applicability engine judges.

A revision is the package stream's count of registrations, appended at the stream's expected
version, so two operators saving one package at once get revision n+1 and a DPM-E278, never two
n+1. Content is named by the upload that brought it; the api reads the upload's fate from the log
(``content-<upload>``), not a projection, so a package registered right after its upload completed
never sees a stale "still open".
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import NO_STREAM, Conn, EventLog, StreamConflict
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import (
    PackageContentStored,
    PackageRegistered,
    PackageRemoved,
    PackageUploadAborted,
    PackageUploadOpened,
)
from dpm_schemas.events.packages import package_stream_key
from dpm_schemas.ids import stream_id
from dpm_schemas.packages import Package


@dataclass(frozen=True)
class OpenedUpload:
    upload_id: uuid.UUID
    token: str
    size: int
    expires_at: datetime


async def open_upload(
    log: EventLog, conn: Conn, *, size: int, sha256: str | None, file_name: str, ttl: float, actor: str
) -> OpenedUpload:
    """A token for sending one file's bytes to the updater (its SHA-256 alone goes to the log)."""
    token = secrets.token_urlsafe(32)
    upload_id = uuid.uuid4()
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    event = PackageUploadOpened(
        upload_id=upload_id,
        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        size=size,
        sha256=sha256,
        file_name=file_name,
        expires_at=expires_at,
    )
    await log.append(
        stream_id(subjects.UPLOAD, upload_id), NO_STREAM, [NewEvent(event, command_metadata(actor))], conn=conn
    )
    return OpenedUpload(upload_id, token, size, expires_at)


async def stored_content(log: EventLog, conn: Conn, upload_id: uuid.UUID) -> PackageContentStored:
    """The content an upload brought, or why a package cannot name it yet (DPM-E275)."""
    for rec in await log.read_stream(stream_id(subjects.CONTENT, upload_id), conn=conn):
        if isinstance(rec.event, PackageContentStored):
            return rec.event
        if isinstance(rec.event, PackageUploadAborted):
            raise E.PACKAGE_CONTENT_MISSING(upload=str(upload_id), state=f"aborted: {rec.event.code}")
    opened = await log.read_stream(stream_id(subjects.UPLOAD, upload_id), conn=conn)
    raise E.PACKAGE_CONTENT_MISSING(upload=str(upload_id), state="open" if opened else "unknown")


async def register(
    log: EventLog,
    conn: Conn,
    package: Package,
    content: PackageContentStored | None,
    *,
    file_name: str,
    expected: int | None,
    actor: str,
) -> tuple[Package, int]:
    """Append the package's next revision; (the package as registered, log position). ``expected``:
    the revision the operator's change was based on (None: whatever is current)."""
    sid = stream_id(subjects.PACKAGE, package_stream_key(package.id))
    history = await log.read_stream(sid, conn=conn)
    current = _current_revision(history)
    if expected is not None and expected != current:
        raise E.PACKAGE_REVISION_CONFLICT(package=package.id, current=current, expected=expected)
    revision = max([0, *(r.event.package.revision for r in history if isinstance(r.event, PackageRegistered))]) + 1
    registered = package.model_copy(update={"revision": revision})
    event = PackageRegistered(
        package=registered,
        content_sha256=content.sha256 if content else None,
        content_size=content.size if content else 0,
        file_name=file_name,
    )
    version = history[-1].stream_version if history else NO_STREAM
    try:
        done = await log.append(sid, version, [NewEvent(event, command_metadata(actor))], conn=conn)
    except StreamConflict:
        raise E.PACKAGE_REVISION_CONFLICT(package=package.id, current="newer", expected=current) from None
    return registered, done.position


async def remove(log: EventLog, conn: Conn, package_id: str, *, actor: str) -> int:
    sid = stream_id(subjects.PACKAGE, package_stream_key(package_id))
    history = await log.read_stream(sid, conn=conn)
    current = _current_revision(history)
    if current == 0:
        raise E.PACKAGE_NOT_FOUND(package=package_id)
    event = PackageRemoved(package_id=package_id, revision=current)
    try:
        done = await log.append(sid, history[-1].stream_version, [NewEvent(event, command_metadata(actor))], conn=conn)
    except StreamConflict:
        raise E.PACKAGE_REVISION_CONFLICT(package=package_id, current="newer", expected=current) from None
    return done.position


def _current_revision(history: Sequence[RecordedEvent]) -> int:
    """The live revision (0: never registered, or removed since)."""
    current = 0
    for rec in history:
        if isinstance(rec.event, PackageRegistered):
            current = rec.event.package.revision
        elif isinstance(rec.event, PackageRemoved):
            current = 0
    return current


async def list_packages(conn: Conn) -> list[dict[str, Any]]:
    rows = await (
        await conn.execute(
            "SELECT definition, content_sha256, content_size, file_name, registered_at, registered_by"
            " FROM api.packages ORDER BY package_id"
        )
    ).fetchall()
    return [_view(*r) for r in rows]


async def get_package(conn: Conn, package_id: str) -> dict[str, Any]:
    row = await (
        await conn.execute(
            "SELECT definition, content_sha256, content_size, file_name, registered_at, registered_by"
            " FROM api.packages WHERE package_id = %s",
            (package_id,),
        )
    ).fetchone()
    if row is None:
        raise E.PACKAGE_NOT_FOUND(package=package_id)
    return _view(*row)


def _view(
    definition: dict[str, Any], sha256: str | None, size: int, file_name: str, at: datetime, by: str
) -> dict[str, Any]:
    return {
        "package": definition,
        "content": {"sha256": sha256, "size": size, "file_name": file_name} if sha256 else None,
        "registered_at": at.isoformat(),
        "registered_by": by,
    }


async def inventory_of(conn: Conn, machine_id: uuid.UUID) -> dict[str, Any] | None:
    row = await (
        await conn.execute(
            "SELECT os, kernel, packages, reported_at FROM api.inventories WHERE machine_id = %s", (machine_id,)
        )
    ).fetchone()
    if row is None:
        return None
    return {"os": row[0], "kernel": row[1], "packages": list(row[2]), "reported_at": row[3].isoformat()}
