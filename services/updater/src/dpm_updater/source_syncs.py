"""Package sources synced by the updater (issue 14): "sync now" (after the api's SourceSaved or
SourceSyncRequested, from the durable "sources") and a timer that syncs every source whose interval
has passed, on the injected clock.

A sync reads the source and what earlier syncs offered from ``source_models``, runs the blocking
``SourceSync`` on a worker thread (the Release or repomd.xml, its signature, the indexes, then the files of the
included packages that are new or changed, hash-checked into the content store agents are served
from), and appends SourceSynced to ``sync-<source>``. Every failure is a SourceSynced with ok False
and its code; a package whose file did not arrive is not offered, so the next sync tries it again.
One sync per source at a time in this process: a request during a sync runs one more after it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_runtime.service import Runtime
from dpm_schemas import DpmError, E, Metadata, NewEvent, subjects
from dpm_schemas.events import SourceSaved, SourceSynced
from dpm_schemas.events.sources import SyncCounts
from dpm_schemas.ids import stream_id
from dpm_updater import source_models
from dpm_updater.adapters.content import ContentStore
from dpm_updater.domain.sources import included, is_due, offered, previous_index, synced_events
from dpm_updater.sources.config import SourceConfig
from dpm_updater.sources.credentials import credentials_for, proxy_with
from dpm_updater.sources.sync import SourceSync, SyncResult

log = logging.getLogger(__name__)
ACTOR = "updater"
Clock = Callable[[], datetime]


@dataclass
class SourceSyncs:
    pool: AsyncConnectionPool[Conn]
    eventlog: EventLog
    store: ContentStore
    clock: Clock
    credentials: Path | None = None  # DPM_UPDATER_SOURCE_CREDENTIALS
    tick: float = 30.0  # seconds between looks for due sources
    _running: dict[uuid.UUID, asyncio.Task[None]] = field(default_factory=dict)
    _again: set[uuid.UUID] = field(default_factory=set)
    _started: dict[uuid.UUID, datetime] = field(default_factory=dict)

    async def request(self, source_id: uuid.UUID, meta: Metadata | None = None) -> None:
        """Sync the source now (in the background), or once more after the sync under way."""
        task = self._running.get(source_id)
        if task is not None and not task.done():
            self._again.add(source_id)
            return
        self._running[source_id] = asyncio.create_task(self._loop(source_id, meta), name=f"sync {source_id}")

    async def _loop(self, source_id: uuid.UUID, meta: Metadata | None) -> None:
        try:
            while True:
                self._again.discard(source_id)
                try:
                    await self.sync_once(source_id, meta)
                except Exception:  # the log or the database: the timer's next look tries again
                    log.exception("sync of source %s not recorded", source_id)
                if source_id not in self._again:
                    return
        finally:
            self._running.pop(source_id, None)

    async def sync_once(self, source_id: uuid.UUID, meta: Metadata | None = None) -> None:
        async with self.pool.connection() as conn:
            saved = await source_models.source_of(conn, source_id)
            rows = await source_models.offered_rows(conn, source_id)
        if saved is None:  # removed meanwhile
            return
        at = self._started[source_id] = self.clock()
        try:
            events = await asyncio.to_thread(self._blocking, saved, rows, at)
        except DpmError as exc:
            events = synced_events(source_id, at, ok=False, code=exc.code, message=exc.message, counts=SyncCounts())
        except Exception as exc:  # a bug, not a repository's failure: still recorded, with its own code
            err = E.SOURCE_SYNC_FAILED(source=saved.name, reason=repr(exc)[:300])
            log.exception("%s %s", err.code, err.message)
            events = synced_events(source_id, at, ok=False, code=err.code, message=err.message, counts=SyncCounts())
        meta = meta or Metadata(correlation_id=uuid.uuid4(), actor=ACTOR)
        sid = stream_id(subjects.SYNC, source_id)
        await self.eventlog.append(sid, ANY_VERSION, [NewEvent(e, meta) for e in events])
        last = events[-1]
        log.info("source %s synced: ok=%s %s %s", saved.name, last.ok, last.code or "", last.counts)

    def _blocking(self, saved: SourceSaved, rows: list[source_models.OfferedRow], at: datetime) -> list[SourceSynced]:
        with tempfile.TemporaryDirectory(prefix="dpm-source-") as tmp:
            config = self._config(saved, Path(tmp))
            result = SourceSync(self.store).run(
                config,
                previous_index(rows),
                fetch_packages=True,
                include=lambda e: included(saved.include, e.package),
            )
        offers = offered(result.changes, {f.filename for f in result.failures})
        first = result.failures[0] if result.failures else None
        # the first failure names its file: a full store's message names only the directory
        message = f"{first.filename}: {first.message}" if first else f"{len(offers)} packages offered"
        return synced_events(
            saved.source_id,
            at,
            ok=first is None,
            code=first.code if first else None,
            message=message,
            counts=_counts(result, len(offers)),
            entries=offers,
        )

    def _config(self, saved: SourceSaved, tmp: Path) -> SourceConfig:
        """The sync's settings: the key in a private file, the proxy with the updater's credentials."""
        key_file = None
        if saved.key:
            key_file = tmp / "key.asc"
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(saved.key)
        proxy = proxy_with(saved.proxy, credentials_for(self.credentials, saved.name)) if saved.proxy else None
        return SourceConfig(
            name=saved.name,
            kind=saved.kind,
            url=saved.url,
            suite=saved.suite or "",
            components=saved.components,
            architectures=saved.architectures,
            key_file=key_file,
            proxy=proxy,
            verify_tls=saved.verify_tls,
        )

    async def timer(self, rt: Runtime) -> None:
        """Every ``tick``: request a sync of each source whose interval has passed (a service task)."""
        try:
            while not rt.stop.is_set():
                try:
                    await self.due_round()
                except Exception:
                    log.exception("looking for due package sources failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rt.stop.wait(), self.tick)
        finally:
            for task in list(self._running.values()):
                task.cancel()

    async def due_round(self) -> None:
        async with self.pool.connection() as conn:
            rows = await source_models.schedule(conn)
        now = self.clock()
        for source_id, interval, last in rows:
            if source_id in self._running:
                continue
            known = [t for t in (last, self._started.get(source_id)) if t is not None]
            if is_due(max(known) if known else None, interval, now):
                await self.request(source_id)


def _counts(result: SyncResult, offered_count: int) -> SyncCounts:
    return SyncCounts(
        listed=result.listed,
        included=len(result.index.entries),
        offered=offered_count,
        downloaded=len(result.downloaded),
        failed=len(result.failures),
        bytes=result.bytes_fetched,
    )
