"""The imager's reactions to the log, on its router (dependencies bound in bootstrap.py).

- ``gc``: an image was deleted -> collect its chunks, once the images read model has the deletion
  (the collection itself runs after the commit: it deletes files, which no transaction can undo).
- ``transfer-ends``: an execution completed, failed or was suspended -> abort its open transfers
  (lifetime.py says why), once the transfers read model has seen the end.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from dpm_imager import lifetime
from dpm_imager.adapters.collector import Collector
from dpm_imager.adapters.readmodel import open_transfers_of
from dpm_runtime.eventlog import EventLog
from dpm_runtime.handlers import Ctx, Router
from dpm_runtime.service import CatchUp
from dpm_schemas.events import ExecutionCompleted, ExecutionFailed, ExecutionSuspended, ImageDeleted

router = Router(service="imager")


@router.handles(ImageDeleted, durable="gc")
async def image_deleted(e: ImageDeleted, ctx: Ctx, *, images: CatchUp, collector: Collector) -> None:
    position = ctx.position

    async def collect() -> None:  # after the commit: no transaction held while the read model catches up
        await images(position)
        await collector.run()

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
