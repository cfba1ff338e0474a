"""Receiving package content: authorise the call's upload token, append the request's bytes where
the store's copy ends, and once the declared size is reached keep the content under its SHA-256 and
record it (PackageContentStored, once per upload: the stream must not exist yet) -- or abort it
(PackageUploadAborted) when its digest is not the declared one.

Bytes are written in a worker thread, a block at a time, so a large upload never blocks the event
loop; each request ends with an fsync before its new offset is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from dpm_runtime.eventlog import NO_STREAM, EventLog, StreamConflict
from dpm_runtime.service import Runtime
from dpm_schemas import DpmError, E, Metadata, NewEvent, subjects
from dpm_schemas.events import PackageContentStored, PackageUploadAborted
from dpm_schemas.ids import stream_id
from dpm_updater.adapters.content import ContentStore
from dpm_updater.domain.uploads import Upload, check_append, check_digest, check_use
from dpm_updater.projections import upload_by_token

_BUFFER = 1 << 20  # bytes gathered before one write in the worker thread


@dataclass
class Receiver:
    rt: Runtime
    store: ContentStore
    clock: Callable[[], datetime]

    @property
    def eventlog(self) -> EventLog:
        return self.rt.eventlog

    async def authorize(self, token: str, upload_id: UUID) -> Upload:
        digest = hashlib.sha256(token.encode()).hexdigest()
        upload = await self._lookup(digest, upload_id)
        if upload is None:  # opened a moment ago: the projection may not have seen it yet
            await self.rt.projections["package_uploads"].wait_for(await self.eventlog.head(), timeout=5)
            upload = await self._lookup(digest, upload_id)
        if upload is not None and upload.state == "stored":
            return upload  # HEAD of a finished upload still answers, with its digest
        return check_use(upload, self.clock())

    async def _lookup(self, digest: str, upload_id: UUID) -> Upload | None:
        async with self.rt.pool.connection() as conn:
            return await upload_by_token(conn, digest, upload_id)

    async def receive(self, u: Upload, start: int, length: int | None, body: AsyncIterator[bytes]) -> int:
        """Append the body at ``start``; the bytes held afterwards (fsynced)."""
        check_use(u, self.clock())
        with self.store.writing(u.upload_id) as fd:
            held = await asyncio.to_thread(self.store.held, u.upload_id)
            check_append(u, held, start, length)
            pending: list[bytes] = []
            size = buffered = 0
            async for part in body:
                if held + size + len(part) > u.size:
                    raise E.PACKAGE_UPLOAD_OVERFLOW(upload=str(u.upload_id), size=u.size)
                pending.append(part)
                size += len(part)
                buffered += len(part)
                if buffered >= _BUFFER:
                    await asyncio.to_thread(self.store.write, fd, b"".join(pending))
                    pending.clear()
                    buffered = 0
            await asyncio.to_thread(self._finish_request, fd, b"".join(pending))
        return held + size

    def _finish_request(self, fd: int, rest: bytes) -> None:
        self.store.write(fd, rest)
        self.store.sync(fd)

    async def complete(self, u: Upload) -> str:
        """Keep and record complete content (its SHA-256), or abort the upload (DPM-E272)."""
        actual = await asyncio.to_thread(self.store.digest, u.upload_id)
        try:
            check_digest(u, actual)
        except DpmError as refusal:
            await asyncio.to_thread(self.store.discard, u.upload_id)
            await self._record(
                u, PackageUploadAborted(upload_id=u.upload_id, code=refusal.code, reason=refusal.message)
            )
            raise
        await asyncio.to_thread(self.store.keep, u.upload_id, actual)
        await self._record(u, PackageContentStored(upload_id=u.upload_id, sha256=actual, size=u.size))
        return actual

    async def _record(self, u: Upload, event: PackageContentStored | PackageUploadAborted) -> None:
        with contextlib.suppress(StreamConflict):  # another request or replica recorded this end first
            await self.eventlog.append(
                stream_id(subjects.CONTENT, u.upload_id), NO_STREAM, [NewEvent(event, Metadata.new(actor="updater"))]
            )
        await self.rt.projections["package_uploads"].wait_for(await self.eventlog.head(), timeout=10)
