"""The dashboard's own event stream: it tells an open dashboard *that* its figures changed (console.js
then fetches the fragment again), never what changed, so it costs next to nothing per open page.

Two shared sources, none per stream: the api's one live feed (``dpm_api.live``) pushes every
execution row that changed, and a ``Pulse`` reads a tiny digest of the rest (machines' and backups'
newest positions) at most once per ``PULSE`` seconds for the whole process, however many dashboards
are open. An execution's row counts as a change only when its state, code or cleared flag moved (its
percent does not show on the dashboard), and transfer signals never do. The chart's 5-minute bucket
rolling over is one too. A stream says so at most once per ``GAP`` seconds (a busy fleet changes many
times a second; each saying costs the page one fragment fetch): a change inside the gap is held
until it passes, never lost."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dpm_api import live
from dpm_api.console import dash_chart
from dpm_runtime.eventlog import Conn
from dpm_runtime.service import Runtime
from dpm_schemas.events import ImageCaptured

PULSE = 2.0  # seconds between digest reads (one per process) and between a stream's checks
GAP = 1.0  # seconds at least between two CHANGED of one stream
CHANGED = "event: execution\ndata: {}\n\n"  # the event console.js's data-refresh-on listens to
OPENED = ": dashboard\n\n"  # a comment: the stream is open (EventSource shows "Live")
DIGEST = (
    "SELECT (SELECT max(position) FROM api.machines), (SELECT count(*) FROM api.machines),"
    " (SELECT max(position) FROM api.executions), (SELECT max(position) FROM events WHERE type = %s)"
)


async def digest(conn: Conn) -> tuple[Any, ...]:
    """What the figures not pushed by the feed depend on; equal digests, equal figures. The executions'
    newest position is in too: rows another api replica applied never reach this process's feed."""
    row = await (await conn.execute(DIGEST, (ImageCaptured.wire_name,))).fetchone()
    return tuple(row or ())


@dataclass
class Pulse:
    """The process's one reader of ``digest``: the first stream to ask in a ``every``-second window
    reads it, the others get that answer."""

    every: float = PULSE
    value: tuple[Any, ...] = ()
    at: float = -math.inf
    reads: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def current(self, rt: Runtime) -> tuple[Any, ...]:
        async with self.lock:
            if time.monotonic() - self.at >= self.every:
                async with rt.pool.connection() as conn:
                    self.value = await digest(conn)
                self.at, self.reads = time.monotonic(), self.reads + 1
        return self.value


def shared_key(feed: live.LiveFeed, pulse: Pulse, at: datetime) -> tuple[Any, ...] | None:
    """What the figures of this moment are known by, for the fragment's shared cache: the feed's
    newest execution row, the pulse's digest and the chart's bucket. None while no stream keeps the
    pulse fresh (it was last read over two periods ago): then nothing says what changed, read afresh."""
    if time.monotonic() - pulse.at > 2 * pulse.every:
        return None
    return (feed.position, pulse.value, dash_chart.floor(at))


@dataclass
class Shared:
    """The figures last read for the fragment and their key: every dashboard told of the same change
    fetches the fragment within a second, and one read serves them all. Keyed before the read, so
    the figures are never older than their key; any later change moves the key."""

    key: tuple[Any, ...] | None = None
    figures: Any = None
    reads: int = 0

    async def get(self, key: tuple[Any, ...] | None, load: Callable[[], Any]) -> Any:
        if key is not None and key == self.key:
            return self.figures
        figures, self.reads = await load(), self.reads + 1
        if key is not None:
            self.key, self.figures = key, figures
        return figures


def pulse_of(state: Any) -> Pulse:
    """The app's pulse (``app.state.dash_pulse``), made on first use."""
    if not isinstance(found := getattr(state, "dash_pulse", None), Pulse):
        found = state.dash_pulse = Pulse()
    return found


def shared_of(state: Any) -> Shared:
    """The app's fragment cache (``app.state.dash_shared``), made on first use."""
    if not isinstance(found := getattr(state, "dash_shared", None), Shared):
        found = state.dash_shared = Shared()
    return found


def moved(seen: dict[str, tuple[Any, ...]], items: list[Any]) -> bool:
    """Whether any of ``items`` (feed changes and transfer signals) changes a figure: an execution not
    seen before, or one whose state, code or cleared flag differs from what was seen. ``seen`` is updated."""
    changed = False
    for item in items:
        if isinstance(item, live.Change):
            row = item.row
            key = (row["state"], row["code"], row["cleared"])
            if seen.get(row["execution_id"]) != key:
                seen[row["execution_id"]] = key
                changed = True
    return changed


async def beats(
    rt: Runtime,
    feed: live.LiveFeed,
    pulse: Pulse,
    clock: Callable[[], datetime],
    gone: Callable[[], Any],
    seconds: float,
    gap: float = GAP,
) -> AsyncIterator[str]:
    """``CHANGED`` whenever the dashboard's figures may differ from the last ones, for at most
    ``seconds``; ends when ``gone()`` (awaited: the browser left) or the api closes."""
    seen: dict[str, tuple[Any, ...]] = {}
    sub = feed.subscribe(live.Watch())
    deadline, said, held = time.monotonic() + seconds, -math.inf, False
    try:
        last = (await pulse.current(rt), dash_chart.floor(clock()))
        yield OPENED
        while time.monotonic() < deadline and not rt.closing.is_set() and not await gone():
            wait = max(0.01, said + gap - time.monotonic()) if held else pulse.every
            items: list[Any] = []
            with contextlib.suppress(TimeoutError):
                items.append(await asyncio.wait_for(sub.queue.get(), timeout=wait))
            items += sub.take()
            changed, sub.resync = moved(seen, items) or sub.resync, False
            now = (await pulse.current(rt), dash_chart.floor(clock()))
            held, last = held or changed or now != last, now
            if held and time.monotonic() - said >= gap:
                held, said = False, time.monotonic()
                yield CHANGED
    finally:
        feed.unsubscribe(sub)
