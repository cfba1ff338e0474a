"""The updater's timer tasks: a body run every so many seconds in a unit of work of its own (its
appends and read-model writes in one transaction, its effects after the commit), until the service
stops. A round that fails is logged and the next one looks again: nothing is lost, since each round
reads what is due afresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from dpm_runtime.handlers import Ctx, unit_of_work
from dpm_runtime.service import Runtime
from dpm_schemas import Metadata

log = logging.getLogger(__name__)
ACTOR = "updater"


async def every(rt: Runtime, seconds: float, name: str, body: Callable[[Ctx], Awaitable[object]]) -> None:
    while not rt.stop.is_set():
        try:
            async with unit_of_work(rt.pool, rt.eventlog, cause=Metadata.new(actor=ACTOR), actor=ACTOR,
                                    name=name) as ctx:  # fmt: skip
                await body(ctx)
        except Exception:
            log.exception("%s round failed; the next one looks again", name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rt.stop.wait(), seconds)
