"""The live feed's pure rules: which changes a stream's watch keeps, what its view sends again, and
what an overflowing queue does (never blocks the feed; a lost row means a resync)."""

from __future__ import annotations

import asyncio
import uuid

from dpm_api.live import Change, LiveFeed, Subscriber, View, Watch
from dpm_schemas.events import ChunkSent

RUN, OTHER = str(uuid.uuid4()), str(uuid.uuid4())


def row(eid: str, state: str = "queued", percent: int | None = None, run: str = RUN, machine: str = "pc1") -> dict:
    return {"execution_id": eid, "run_id": run, "machine_id": f"id-{machine}", "machine": machine,
            "state": state, "percent": percent, "code": None}  # fmt: skip


def signal(eid: str) -> ChunkSent:
    return ChunkSent(transfer_id=uuid.uuid4(), chunk_index=0, bytes_done=1, bytes_total=2, rate_bps=1.0,
                     execution_id=uuid.UUID(eid))  # fmt: skip


def test_a_watch_matches_its_run_and_its_machine_by_name_or_id() -> None:
    assert Watch().matches(row("a", run=OTHER))
    assert Watch(run_id=RUN).matches(row("a")) and not Watch(run_id=RUN).matches(row("a", run=OTHER))
    assert Watch(machine="pc1").matches(row("a")) and Watch(machine="id-pc1").matches(row("a"))
    assert not Watch(machine="pc2").matches(row("a"))
    assert not Watch(run_id=RUN, machine="pc2").matches(row("a"))


def test_a_subscriber_keeps_its_rows_and_the_transfers_of_executions_it_showed() -> None:
    eid, foreign = str(uuid.uuid4()), str(uuid.uuid4())
    sub = Subscriber(Watch(run_id=RUN))
    sub.offer(signal(eid))  # not shown yet: dropped
    sub.offer(Change(1, row(foreign, run=OTHER)))
    sub.offer(Change(2, row(eid)))
    sub.offer(signal(eid))
    sub.offer(signal(foreign))
    taken = sub.take()
    assert [type(i) for i in taken] == [Change, ChunkSent] and sub.shown == {eid} and not sub.resync


def test_an_overflowing_queue_marks_a_resync_for_rows_and_drops_transfers_quietly() -> None:
    sub = Subscriber(Watch(), asyncio.Queue(2))
    eid = str(uuid.uuid4())
    sub.offer(Change(1, row(eid)))
    sub.offer(Change(2, row(eid, "running")))
    sub.offer(signal(eid))  # full: a progress line is replaced by the next one
    assert not sub.resync
    sub.offer(Change(3, row(eid, "completed")))  # full: this one must be re-read
    assert sub.resync and sub.queue.qsize() == 2


def test_the_feed_offers_to_every_subscriber_without_waiting_for_a_slow_one() -> None:
    feed = LiveFeed()
    slow, fast = feed.subscribe(Watch()), feed.subscribe(Watch())
    slow.queue = asyncio.Queue(1)
    for i in range(5):
        feed.publish(Change(i, row(str(uuid.uuid4()))))
    assert fast.queue.qsize() == 5 and slow.queue.qsize() == 1 and slow.resync and not fast.resync
    feed.unsubscribe(slow)
    assert feed.subscribers == {fast}


def test_a_view_sends_a_change_once_and_never_an_older_one() -> None:
    view, eid = View(Watch()), str(uuid.uuid4())
    first = view.render(Change(5, row(eid, "running", 10)))
    assert first is not None and first.startswith("event: execution\ndata: {")
    assert view.render(Change(6, row(eid, "running", 10))) is None  # nothing shown changed
    assert view.render(Change(4, row(eid, "queued"))) is None  # older than what was sent (a resync overtook it)
    assert view.render(Change(7, row(eid, "running", 20))) is not None
    transfer = view.render(signal(eid))
    assert transfer is not None and transfer.startswith("event: transfer\n")


def test_a_run_ends_once_every_execution_it_saw_is_final() -> None:
    view, a, b = View(Watch(run_id=RUN)), str(uuid.uuid4()), str(uuid.uuid4())
    assert not view.ended()  # nothing seen yet: the run may not be visible yet
    view.render(Change(1, row(a, "completed")))
    view.render(Change(2, row(b, "running")))
    assert not view.ended()
    view.render(Change(3, row(b, "failed")))
    assert view.ended()
    unfiltered = View(Watch())
    unfiltered.render(Change(1, row(a, "completed")))
    assert not unfiltered.ended()  # only a run's stream ends
