"""The dashboard's pure parts: the throughput chart's buckets and bars, the figures as shown, the
attention items' links, and what its stream counts as a change (and its shared digest reader)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from dpm_api import live
from dpm_api.console import dash_chart, dash_data, dash_stream
from dpm_api.console.dash_chart import Bucket

NOW = datetime(2026, 12, 4, 12, 7, 30, tzinfo=UTC)
GIB = 1024**3


def test_buckets_are_twelve_clock_aligned_five_minutes_ending_with_now() -> None:
    rows = dash_chart.buckets(NOW, [])
    assert len(rows) == 12
    assert rows[-1].start == datetime(2026, 12, 4, 12, 5, tzinfo=UTC)
    assert rows[0].start == datetime(2026, 12, 4, 11, 10, tzinfo=UTC)
    assert all(b.end == n.start for b, n in itertools.pairwise(rows))
    assert dash_chart.floor(datetime(2026, 12, 4, 0, 4, 59, tzinfo=UTC)).minute == 0


def test_samples_land_in_their_bucket_old_ones_are_dropped_future_ones_count_as_now() -> None:
    samples = [
        (NOW - timedelta(minutes=1), GIB),  # 12:06:30: the newest bucket
        (NOW - timedelta(minutes=2, seconds=30), 512),  # 12:05:00 exactly: still the newest
        (NOW - timedelta(minutes=2, seconds=31), 100),  # 12:04:59: the one before
        (NOW - timedelta(hours=2), 10**12),  # before the hour: not charted
        (NOW + timedelta(seconds=3), 7),  # the database's clock a little ahead
        (datetime(2026, 12, 4, 11, 10, tzinfo=UTC), -5),  # a negative size counts as none
    ]
    rows = dash_chart.buckets(NOW, samples)
    assert (rows[-1].transfers, rows[-1].bytes) == (3, GIB + 512 + 7)
    assert (rows[-2].transfers, rows[-2].bytes) == (1, 100)
    assert (rows[0].transfers, rows[0].bytes) == (1, 0)
    assert sum(b.transfers for b in rows) == 5
    assert rows[-1].rate == (GIB + 519) / 300


def test_bars_are_to_scale_and_a_small_transfer_is_still_visible() -> None:
    start = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
    w = dash_chart.WIDTH
    rows = [Bucket(start + i * w, w, 1 if b else 0, b) for i, b in enumerate([0, GIB, GIB // 2, 1])]
    c = dash_chart.chart(rows, width=400, height=150, every=2)
    plot = c.base - 18
    heights = [b.height for b in c.bars]
    assert heights[0] == 0 and heights[1] == plot and heights[2] == plot / 2 and heights[3] == 1.0
    assert all(b.y + b.height == c.base for b in c.bars)
    assert [b.x for b in c.bars] == [2.0, 102.0, 202.0, 302.0] and c.bars[0].width == 96.0
    assert c.peak == GIB and [t.text for t in c.ticks] == ["11:00", "11:10"]
    assert c.bars[1].label == "11:05\N{EN DASH}11:10: 1.0 GiB in 1 transfer"


def test_an_empty_hour_draws_no_bars() -> None:
    c = dash_chart.chart(dash_chart.buckets(NOW, []))
    assert c.peak == 0 and all(b.height == 0 and b.y == c.base for b in c.bars) and len(c.ticks) == 4


def test_sizes_and_counts_as_shown() -> None:
    assert [dash_chart.human(n) for n in (0, 512, 1536, 2 * GIB, -3, 1024**6 * 3)] == [
        "0 B", "512 B", "1.5 KiB", "2.0 GiB", "0 B", "3072.0 PiB"]  # fmt: skip
    assert dash_data.figure(0, False) == "0"
    assert dash_data.figure(1234567, False) == "1,234,567"
    assert dash_data.figure(100_000, True) == "100,000+"


def test_attention_items_link_where_they_are_resolved() -> None:
    mid = uuid.UUID(int=7)
    item = dash_data.Item(uuid.uuid4(), uuid.uuid4(), mid, "pc 1", "wipe", "failed", "DPM-E116", "no", None)
    assert item.href == f"/console/executions?machine={mid}&state=failed"
    agent = dash_data.Agent(mid, "<img src=x onerror=alert(1)>&", "0.0.1", True)
    assert agent.href == "/console/machines?q=%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E%26"


def change(eid: str, state: str, *, code: str | None = None, cleared: bool = False, percent: int = 0) -> live.Change:
    row = {"execution_id": eid, "state": state, "code": code, "cleared": cleared, "percent": percent}
    return live.Change(1, row)


def test_the_stream_counts_state_code_and_clearing_not_progress_or_transfers() -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    assert dash_stream.moved(seen, [change("a", "running")])  # a new execution
    assert not dash_stream.moved(seen, [change("a", "running", percent=40)])  # progress only
    assert not dash_stream.moved(seen, [object()])  # a transfer signal
    assert not dash_stream.moved(seen, [])
    assert dash_stream.moved(seen, [change("a", "failed", code="DPM-E116")])
    assert dash_stream.moved(seen, [change("a", "failed", code="DPM-E116", cleared=True)])
    assert seen == {"a": ("failed", "DPM-E116", True)}


class Conn:
    def __init__(self, counter: list[int]) -> None:
        self.counter = counter

    async def execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        self.counter.append(1)
        answer = SimpleNamespace()

        async def one() -> tuple[int, ...]:
            return (len(self.counter), 3, 9, None)

        answer.fetchone = one
        return answer


class Pool:
    def __init__(self) -> None:
        self.reads: list[int] = []

    def connection(self) -> Any:
        pool = self

        class Use:
            async def __aenter__(self) -> Conn:
                return Conn(pool.reads)

            async def __aexit__(self, *exc: object) -> None:
                return None

        return Use()


async def test_the_pulse_reads_once_per_window_for_every_stream() -> None:
    rt: Any = SimpleNamespace(pool=Pool())
    pulse = dash_stream.Pulse(every=60)
    answers = await asyncio.gather(*(pulse.current(rt) for _ in range(200)))
    assert len(rt.pool.reads) == 1 and pulse.reads == 1 and set(answers) == {(1, 3, 9, None)}
    pulse.every = 0
    assert await pulse.current(rt) == (2, 3, 9, None)
    state = SimpleNamespace()
    assert dash_stream.pulse_of(state) is dash_stream.pulse_of(state)


async def test_the_stream_says_changed_on_a_pushed_state_not_on_progress_and_once_per_gap() -> None:
    feed = live.LiveFeed()
    rt: Any = SimpleNamespace(pool=Pool(), closing=asyncio.Event())
    pulse = dash_stream.Pulse(every=0.05)
    pulse.current = _fixed  # type: ignore[method-assign]
    out: list[tuple[str, float]] = []

    async def gone() -> bool:
        return len(out) >= 3

    async def read() -> None:
        async for text in dash_stream.beats(rt, feed, pulse, lambda: NOW, gone, 30, gap=0.5):
            out.append((text, time.monotonic()))

    task = asyncio.create_task(read())
    async with asyncio.timeout(5):
        while not feed.subscribers:
            await asyncio.sleep(0.01)
        feed.publish(change("a", "running"))
        while len(out) < 2:
            await asyncio.sleep(0.01)
        feed.publish(change("a", "running", percent=50))  # progress: no figure changes
        await asyncio.sleep(0.1)
        assert [t for t, _ in out] == [dash_stream.OPENED, dash_stream.CHANGED]
        feed.publish(change("a", "failed"))  # inside the gap: held, then said once for both
        feed.publish(change("b", "queued"))
        await task
    assert [t for t, _ in out] == [dash_stream.OPENED, dash_stream.CHANGED, dash_stream.CHANGED]
    assert out[2][1] - out[1][1] >= 0.45 and not feed.subscribers


async def _fixed(rt: Any) -> tuple[Any, ...]:
    return (1, 2, 3, 4)


async def test_the_fragment_cache_serves_one_read_per_key_and_none_without_a_fresh_pulse() -> None:
    feed, pulse = live.LiveFeed(), dash_stream.Pulse(every=2)
    assert dash_stream.shared_key(feed, pulse, NOW) is None  # no stream has read the pulse yet
    pulse.value, pulse.at = (5, 3, 9, None), time.monotonic()
    key = dash_stream.shared_key(feed, pulse, NOW)
    assert key == (0, (5, 3, 9, None), datetime(2026, 12, 4, 12, 5, tzinfo=UTC))
    shared, loads = dash_stream.Shared(), []

    async def load() -> int:
        loads.append(1)
        return len(loads)

    assert [await shared.get(key, load) for _ in range(3)] == [1, 1, 1]
    feed.position = 10  # an execution changed: a new key, a new read
    assert await shared.get(dash_stream.shared_key(feed, pulse, NOW), load) == 2
    later = NOW + timedelta(minutes=3)  # the next bucket
    assert await shared.get(dash_stream.shared_key(feed, pulse, later), load) == 3
    assert [await shared.get(None, load) for _ in range(2)] == [4, 5] and shared.reads == 5
    pulse.at -= 5  # the pulse went stale: nothing is cached
    assert dash_stream.shared_key(feed, pulse, NOW) is None
    state = SimpleNamespace()
    assert dash_stream.shared_of(state) is dash_stream.shared_of(state)
