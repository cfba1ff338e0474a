"""The data plane's dependencies and per-process state: the runtime, the chunk store, progress, and
the caches that keep per-request costs below a chunk's. Built by the bootstrap once the runtime is
connected (``app.state.imager``); every PostgreSQL and disk access of the routes goes through it."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from dpm_imagefmt.manifest import Manifest
from dpm_imagefmt.store import DirStore
from dpm_imager.adapters import images, vouchers
from dpm_imager.adapters.progress import Progress
from dpm_imager.adapters.readmodel import current_manifest, live_manifests, transfer_by_token
from dpm_imager.domain.transfers import Transfer, check_room
from dpm_runtime.eventlog import ANY_VERSION, AppendResult
from dpm_runtime.service import Runtime
from dpm_schemas import DpmError, E, Event

T = TypeVar("T")


@dataclass
class Imager:
    """What the routes need (see the module docstring)."""

    rt: Runtime
    store: DirStore
    progress: Progress
    reserve_bytes: int
    free_factor: float
    manifests: dict[str, Manifest] = field(default_factory=dict)  # decoded, by id (small LRU)
    # Per-request costs that would dominate a chunk's: the token's transfer for a few seconds
    # (dropped at once on commit or abort), and the manifest a restore started with (pinned: a
    # backup committing meanwhile does not change what the restore is writing).
    authorized: dict[tuple[str, UUID], tuple[Transfer, float]] = field(default_factory=dict)
    pinned: dict[UUID, str] = field(default_factory=dict)
    locks: dict[UUID, asyncio.Lock] = field(default_factory=dict)
    renewing: set[UUID] = field(default_factory=set)  # transfers whose TransferRenewed is being appended
    refused_for_space: bool = False  # a DPM-E159 since the last collection
    # Verification and file I/O on threads of its own, as many as cores: CPU-bound work that must
    # neither starve nor be starved by whatever else uses the loop's default executor.
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="imager")
    )

    def offload(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        return asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    def free_bytes(self) -> int:
        """What a backup may still take: the store's free space less the reserve."""
        return self.store.free_bytes() - self.reserve_bytes

    def room(self, free: int, required: int) -> None:
        """check_room, remembering a refusal (DPM-E159): the next collection then removes aborted
        backups' chunks at once instead of keeping them for a resume (``short_of_space``)."""
        try:
            check_room(free, required)
        except DpmError:
            self.refused_for_space = True
            raise

    def short_of_space(self) -> bool:
        """Whether a backup was refused for space since the last call (which forgets it)."""
        refused, self.refused_for_space = self.refused_for_space, False
        return refused

    def forget(self, transfer_id: UUID) -> None:
        for key in [k for k in self.authorized if k[1] == transfer_id]:
            del self.authorized[key]
        self.pinned.pop(transfer_id, None)

    def commit_lock(self, transfer_id: UUID) -> asyncio.Lock:
        """One commit (or abort) of a transfer at a time in this process; replicas meet on the log."""
        if len(self.locks) > 10_000:
            self.locks = {k: v for k, v in self.locks.items() if v.locked()}
        return self.locks.setdefault(transfer_id, asyncio.Lock())

    def manifest(self, mid: str) -> Manifest:
        """A stored manifest, decoded (blocking: offload it)."""
        hit = self.manifests.get(mid)
        if hit is None:
            hit = Manifest.decode(self.store.get_manifest(mid))
            if len(self.manifests) > 64:
                self.manifests.pop(next(iter(self.manifests)))
            self.manifests[mid] = hit
        return hit

    def remember(self, digest: str, t: Transfer) -> None:
        if len(self.authorized) > 10_000:
            self.authorized.clear()
        self.authorized[(digest, t.transfer_id)] = (t, time.monotonic())

    async def lookup(self, digest: str, transfer_id: UUID) -> Transfer | None:
        """The transfer of a token from the read model; one that is not there yet (opened a moment
        ago) is looked up again once the read model has caught up with the log."""
        rt = self.rt
        async with rt.pool.connection() as conn:
            t = await transfer_by_token(conn, digest, transfer_id)
        if t is None:
            await rt.projections["transfers"].wait_for(await rt.eventlog.head(), timeout=3)
            async with rt.pool.connection() as conn:
                t = await transfer_by_token(conn, digest, transfer_id)
        if t is not None:
            self.remember(digest, t)
        return t

    async def manifest_of(self, t: Transfer) -> str:
        """The manifest a restore or verify of ``t`` reads: the image's current one, pinned at first use."""
        if (mid := self.pinned.get(t.transfer_id)) is not None:
            return mid
        async with self.rt.pool.connection() as conn:
            mid = await current_manifest(conn, t.image_id)
        if mid is None:
            raise E.IMAGE_NOT_FOUND(image=t.image)
        self.pinned[t.transfer_id] = mid
        return mid

    async def live_manifests(self) -> list[str]:
        async with self.rt.pool.connection() as conn:
            return await live_manifests(conn)

    async def vouch(self, t: Transfer, chunks: Iterable[str]) -> None:
        async with self.rt.pool.connection() as conn:
            await vouchers.vouch(conn, t.transfer_id, chunks)

    async def vouch_stored(self, t: Transfer, stored: dict[str, int]) -> None:
        async with self.rt.pool.connection() as conn:
            await vouchers.vouch_stored(conn, t.transfer_id, stored)

    async def stored_bytes(self, t: Transfer) -> int:
        async with self.rt.pool.connection() as conn:
            return await vouchers.stored_bytes(conn, t.transfer_id)

    async def unvouched(self, t: Transfer, chunks: frozenset[str]) -> list[str]:
        async with self.rt.pool.connection() as conn:
            return await vouchers.unvouched(conn, t.transfer_id, chunks)

    async def end(self, t: Transfer, *, committed: bool) -> None:
        """A backup ended: its cached state goes, and a committed one's vouchers (an aborted one's
        stay for the collector: they name what it may remove at once when space runs short)."""
        if committed:
            async with self.rt.pool.connection() as conn:
                await vouchers.forget(conn, t.transfer_id)
        self.forget(t.transfer_id)
        self.progress.done(t.transfer_id)

    async def append(self, t: Transfer, event: Event, *, expected: int | None = ANY_VERSION) -> AppendResult:
        return await images.append(self.rt.eventlog, t, event, expected=expected)
