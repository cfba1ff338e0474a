"""The updater's side of package sources, on the durable "sources": a saved source or an
operator's "sync now" starts a sync once the handler's transaction committed (``SourceSyncs``);
the sync reads the source from ``source_models``, which has applied the event by then."""

from __future__ import annotations

from dpm_runtime.checkpoint import require_position
from dpm_runtime.handlers import Ctx, Router
from dpm_schemas.events import SourceRemoved, SourceSaved, SourceSyncRequested
from dpm_updater.source_syncs import SourceSyncs

router = Router(service="updater")
ACTOR = "updater"
READ_MODEL = "updater.source_syncs"


@router.handles(SourceSaved, SourceSyncRequested, SourceRemoved, durable="sources", actor=ACTOR)
async def source_changed(e: SourceSaved | SourceSyncRequested | SourceRemoved, ctx: Ctx, *, syncs: SourceSyncs) -> None:
    """Sync now (a removed source is not synced: the read model no longer has it)."""
    if isinstance(e, SourceRemoved):
        return
    await require_position(ctx.conn, READ_MODEL, ctx.position)
    meta, source_id = ctx.metadata, e.source_id
    ctx.after_commit(lambda: syncs.request(source_id, meta))
