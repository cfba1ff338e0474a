"""The commit of a backup, and its abort: once per transfer, the manifest checked first.

- The manifest is checked off the loop (domain.manifest.check_manifest); anything wrong is DPM-E117
  and nothing is written.
- One commit per transfer: a per-transfer lock in this process, and the image stream's version on
  the append, so a second replica committing the same transfer meets a conflict (DPM-E118).
- Vouched chunks only (adapters/vouchers.py, DPM-E119), every chunk present, the store synced, then
  ImageCaptured -- the only moment the image name moves to the new content. A backup that stops
  before commit changes nothing anyone can see.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpm_imagefmt.manifest import manifest_id
from dpm_imager.adapters.dataplane import Imager
from dpm_imager.adapters.images import captured_in_log, still_open
from dpm_imager.domain.manifest import captured, check_manifest
from dpm_imager.domain.transfers import Transfer
from dpm_runtime.eventlog import ANY_VERSION, AppendResult, StreamConflict
from dpm_schemas import DpmError, E, Event
from dpm_schemas.events import ImageCaptured, TransferAborted

__all__ = ["Committed", "abort", "captured", "check_manifest", "commit", "still_open"]


@dataclass(frozen=True)
class Committed:
    image: str
    manifest: str
    stored_bytes: int
    position: int


async def commit(imager: Imager, t: Transfer, blob: bytes) -> Committed:
    """Commit ``blob`` as ``t``'s manifest; parallel commits wait for the first, then find it
    committed (DPM-E118)."""
    manifest = await imager.offload(check_manifest, blob, t.image)
    async with imager.commit_lock(t.transfer_id):
        version = await still_open(imager.rt.eventlog, t)
        absent = await imager.offload(imager.store.missing, manifest.chunk_ids)
        if absent:
            raise E.IMAGE_INCOMPLETE(image=t.image, missing=len(absent))
        foreign = await imager.unvouched(t, manifest.chunk_ids)
        if foreign:
            raise E.CHUNK_NOT_VOUCHED(image=t.image, count=len(foreign), chunk=foreign[0])
        event = captured(t, manifest, manifest_id(blob), await imager.stored_bytes(t))
        result = await _store_and_append(imager, t, event, blob, version)
    await imager.rt.projections["stored_images"].wait_for(result.position)
    await imager.rt.projections["transfers"].wait_for(result.position)
    await imager.end(t, committed=True)
    return Committed(t.image, event.manifest, event.stored_bytes, result.position)


async def _store_and_append(
    imager: Imager, t: Transfer, event: ImageCaptured, blob: bytes, version: int
) -> AppendResult:
    """Manifest and chunks durable, then the name moves. Only a commit the log refused (another
    commit of this transfer won: a DpmError, raised before or instead of our append) removes a
    manifest it added, and only one no ImageCaptured names. A cancellation, a lost connection or
    anything else leaves it: our ImageCaptured may be in the log, and the garbage collector removes
    an orphan after its grace period anyway."""
    mid = event.manifest
    new = not (imager.store.manifests / mid).exists()
    await imager.offload(imager.store.put_manifest, mid, blob)
    await imager.offload(imager.store.sync)  # chunks and manifest durable before the name moves
    try:
        for _attempt in range(5):
            try:
                return await _append(imager, t, event, expected=version)
            except StreamConflict:  # another replica wrote to the image: decide again on the log
                version = await still_open(imager.rt.eventlog, t)
        raise E.TRANSFER_COMMITTED(transfer=str(t.transfer_id), image=t.image, state="contended")
    except DpmError:
        if new:
            await _drop_unreferenced(imager, t, mid)
        raise


async def _drop_unreferenced(imager: Imager, t: Transfer, mid: str) -> None:
    """Delete a manifest this commit stored in vain, unless the log (this image's stream) or the
    read model, caught up with the log, shows an ImageCaptured naming it; in doubt, keep it."""
    rt = imager.rt
    if await captured_in_log(rt.eventlog, t, mid):
        return
    if not await rt.projections["stored_images"].wait_for(await rt.eventlog.head(), timeout=3):
        return
    if mid not in await _live_manifests(imager):
        await imager.offload(imager.store.delete_manifest, mid)


async def abort(imager: Imager, t: Transfer, reason: str) -> int:
    """A backup gave up: its lock on the name goes now, not at the token's expiry. The log position."""
    event = TransferAborted(transfer_id=t.transfer_id, image_id=t.image_id, image=t.image, reason=reason)
    async with imager.commit_lock(t.transfer_id):  # never beside a commit of the same transfer
        await still_open(imager.rt.eventlog, t)
        result = await _append(imager, t, event)
    await imager.end(t, committed=False)  # its chunks: the gc consumer collects them on the TransferAborted
    return result.position


# The two seams of a commit that a test replaces to stage a race (the append, the read model).
async def _append(imager: Imager, t: Transfer, event: Event, *, expected: int | None = ANY_VERSION) -> AppendResult:
    return await imager.append(t, event, expected=expected)


async def _live_manifests(imager: Imager) -> list[str]:
    return await imager.live_manifests()
