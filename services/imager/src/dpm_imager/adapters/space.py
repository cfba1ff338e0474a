"""The store's free space, told to the api (``StoreSpaceReported`` on the store's stream) so a
backup that cannot fit is refused when it is requested, before any machine is woken, instead of by
this imager at the backup's first chunk after a network boot.

Measured every ``interval`` seconds (a statvfs); reported at start, then only when it moved by 1 %
or 64 MiB, or an hour after the last report, so an idle store adds about one event an hour."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.service import Runtime, Task
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events.imaging import STORE_ID, StoreSpaceReported
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)
MOVED_BYTES = 64 << 20
FRESH_SECONDS = 3600.0


def worth_reporting(last: int | None, now: int, age: float) -> bool:
    """Pure: a new measurement is reported when none was, when it moved enough, or when the last is old."""
    if last is None or age >= FRESH_SECONDS:
        return True
    return abs(now - last) >= max(MOVED_BYTES, abs(last) // 100)


def reporter(free_bytes: Callable[[], int], free_factor: float, eventlog: EventLog, interval: float) -> Task:
    """The imager's task: measure every ``interval`` seconds, report what is ``worth_reporting``."""

    async def loop(rt: Runtime) -> None:
        last: int | None = None
        at = 0.0
        while not rt.stop.is_set():
            try:
                free = await asyncio.to_thread(free_bytes)
                if worth_reporting(last, free, time.monotonic() - at):
                    event = StoreSpaceReported(free_bytes=free, free_factor=free_factor)
                    meta = Metadata.new(actor="imager")
                    await eventlog.append(stream_id(subjects.IMAGE, STORE_ID), ANY_VERSION, [NewEvent(event, meta)])
                    last, at = free, time.monotonic()
            except Exception:
                log.exception("could not report the store's free space; next try in %.0f s", interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.stop.wait(), interval)

    return loop
