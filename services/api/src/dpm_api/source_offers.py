"""Synced packages into the catalogue, on the api's durable "sources": each SourceSynced's offered
entries become package revisions through the same PackageRegistered as an upload's (content named
by SHA-256, already in the updater's store). Per package id (``domain.sources.package_id``) the
highest version offered is registered, only when it differs from the package's current version or
content and is not older; the append is at the stream's expected version, so a redelivered
SourceSynced finds the revision there and registers nothing twice."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence

from dpm_api.domain import sources as rules
from dpm_packages import parse_package
from dpm_runtime.eventlog import NO_STREAM, EventLog, StreamConflict
from dpm_runtime.handlers import Ctx, Retry, Router
from dpm_schemas import DpmError, subjects
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import PackageRegistered, PackageRemoved, SourceRemoved, SourceSaved, SourceSynced
from dpm_schemas.events.packages import package_stream_key
from dpm_schemas.events.sources import OfferedPackage
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)
router = Router(service="api")
ACTOR = "source-sync"


@router.handles(SourceSynced, durable="sources", actor=ACTOR)
async def source_synced(e: SourceSynced, ctx: Ctx, *, eventlog: EventLog) -> None:
    if not e.offered:
        return
    history = await eventlog.read_stream(stream_id(subjects.SOURCE, e.source_id), conn=ctx.conn)
    saved = next((r.event for r in reversed(history) if isinstance(r.event, SourceSaved | SourceRemoved)), None)
    if not isinstance(saved, SourceSaved):
        return
    per_arch = rules.per_arch(saved.kind, saved.architectures)
    for package_id, entry in sorted(rules.newest(e.offered, saved.name, per_arch=per_arch, kind=saved.kind).items()):
        await _offer(ctx, eventlog, saved, package_id, entry)


async def _offer(ctx: Ctx, eventlog: EventLog, saved: SourceSaved, package_id: str, entry: OfferedPackage) -> None:
    sid = stream_id(subjects.PACKAGE, package_stream_key(package_id))
    history = await eventlog.read_stream(sid, conn=ctx.conn)
    current = _current(history)
    if current is not None:
        now = current.package.system_version
        if (now, current.content_sha256) == (entry.version, entry.sha256) or rules.compare_versions(
            saved.kind, entry.version, now
        ) < 0:
            return
    try:
        package = parse_package(_definition(saved, package_id, entry))
    except DpmError as refused:  # a name or version the catalogue cannot hold: logged, the others go on
        log.warning("source %s: %s %s not offered: %s %s", saved.name, entry.name, entry.version, refused.code,
                    refused.message)  # fmt: skip
        return
    revision = max([0, *(r.event.package.revision for r in history if isinstance(r.event, PackageRegistered))]) + 1
    event = PackageRegistered(
        package=package.model_copy(update={"revision": revision}),
        content_sha256=entry.sha256,
        content_size=entry.size,
        file_name=posixpath.basename(entry.filename)[:100],
    )
    try:
        async with ctx.conn.transaction():  # a savepoint: a conflict leaves the batch intact
            await ctx.append(sid, [event], expected=history[-1].stream_version if history else NO_STREAM)
    except StreamConflict:
        raise Retry(f"package {package_id} changed meanwhile", delay=0.5) from None
    log.info("source %s: %s revision %d (%s %s)", saved.name, package_id, revision, entry.name, entry.version)


def _current(history: Sequence[RecordedEvent]) -> PackageRegistered | None:
    current: PackageRegistered | None = None
    for rec in history:
        if isinstance(rec.event, PackageRegistered):
            current = rec.event
        elif isinstance(rec.event, PackageRemoved):
            current = None
    return current


def _definition(saved: SourceSaved, package_id: str, entry: OfferedPackage) -> dict[str, object]:
    return {
        "id": package_id,
        "type": saved.kind,  # deb or rpm, the package type an agent installs it as
        "summary": f"{entry.name} {entry.version} from package source {saved.name}",
        "urgency": saved.urgency.value,
        "system_package": entry.name,
        "system_version": entry.version,
        "architectures": [] if entry.architecture in rules.ANY_ARCH else [entry.architecture],
    }
