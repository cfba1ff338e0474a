"""The imager's reactions to the log, on its router (dependencies bound in bootstrap.py).

- ``gc``: an image was deleted, or a backup aborted (by its client, its execution's end or an
  operator's unlock) -> collect what it leaves, once the read models have the event (the collection
  itself runs after the commit: it deletes files, which no transaction can undo; requests while one
  waits share it, so a burst of aborts costs one pass over the store).
  An operator's ``dpm images gc`` (StoreCollectRequested) runs one at once and answers StoreCollected.
- ``transfer-ends``: an execution completed, failed or was suspended -> abort its open transfers
  (lifetime.py says why), once the transfers read model has seen the end.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from dpm_imager import lifetime
from dpm_imager.adapters.collector import Collector
from dpm_imager.adapters.readmodel import open_transfers_of
from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.handlers import Ctx, Router
from dpm_runtime.service import CatchUp
from dpm_schemas import NewEvent, subjects
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionSuspended,
    ImageDeleted,
    StoreCollected,
    StoreCollectRequested,
    TransferAborted,
)
from dpm_schemas.events.imaging import STORE_ID
from dpm_schemas.ids import stream_id

router = Router(service="imager")


@router.handles(ImageDeleted, TransferAborted, durable="gc")
async def collect_after(
    e: ImageDeleted | TransferAborted, ctx: Ctx, *, images: CatchUp, transfers: CatchUp, collector: Collector
) -> None:
    position = ctx.position

    async def collect() -> None:  # after the commit: no transaction held while the read models catch up
        await (images if isinstance(e, ImageDeleted) else transfers)(position)
        await collector.run()

    ctx.after_commit(collect)


@router.handles(StoreCollectRequested, durable="gc", actor="imager")
async def collect_now(
    e: StoreCollectRequested, ctx: Ctx, *, transfers: CatchUp, collector: Collector, eventlog: EventLog
) -> None:
    """An operator's ``dpm images gc``: collect, then say what went (StoreCollected, which the api
    waits for) -- both after the commit, like every collection."""
    position, meta = ctx.position, ctx.metadata

    async def collect() -> None:
        await transfers(position)
        done = await collector.run(force=True)
        if done is not None:
            result = StoreCollected(request_id=e.request_id, **vars(done))
            await eventlog.append(stream_id(subjects.IMAGE, STORE_ID), ANY_VERSION, [NewEvent(result, meta)])

    ctx.after_commit(collect)


@router.handles(ExecutionCompleted, ExecutionFailed, ExecutionSuspended, durable="transfer-ends")
async def execution_ended(
    e: ExecutionCompleted | ExecutionFailed | ExecutionSuspended,
    ctx: Ctx,
    *,
    transfers: CatchUp,
    eventlog: EventLog,
    forget: Callable[[UUID], None],
) -> None:
    """Abort the open transfers of the execution; this replica forgets their tokens once that committed."""
    await transfers(ctx.position)
    reason = f"its execution {e.execution_id} {lifetime.ENDINGS[type(e)]}"
    ended = await open_transfers_of(ctx.conn, e.execution_id)
    for t in ended:
        await lifetime.abort(ctx, eventlog, t, reason)

    async def forget_tokens() -> None:
        for t in ended:
            forget(t.transfer_id)

    ctx.after_commit(forget_tokens)
