"""Garbage collection and verification of the chunk store (blocking; run in a worker thread).

A chunk is garbage when no live image's manifest names it *and* it is older than the grace
period: a running backup uploads chunks before its manifest exists, and they must survive until
it commits. Replaced manifests go the same way."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from dpm_imagefmt.chunks import CorruptChunk
from dpm_imagefmt.manifest import Manifest
from dpm_imagefmt.store import DirStore


@dataclass(frozen=True)
class Collected:
    chunks: int
    bytes: int
    manifests: int


def collect(store: DirStore, live_manifests: Iterable[str], grace: float) -> Collected:
    live: set[str] = set()
    keep = set(live_manifests)
    for mid in keep:
        live |= Manifest.decode(store.get_manifest(mid)).chunk_ids
    cutoff = time.time() - grace
    chunks = freed = manifests = 0
    for cid in list(store.chunk_ids()):
        if cid not in live and _older(store.path(cid).stat().st_mtime, cutoff):
            freed += store.delete(cid)
            chunks += 1
    for mid in list(store.manifest_ids()):
        if mid not in keep and _older((store.manifests / mid).stat().st_mtime, cutoff):
            store.delete_manifest(mid)
            manifests += 1
    return Collected(chunks, freed, manifests)


def _older(mtime: float, cutoff: float) -> bool:
    return mtime < cutoff


def verify(store: DirStore, manifest: Manifest) -> list[str]:
    """Re-read every chunk of ``manifest``: the ids that are missing or corrupt, in image order.
    Corrupt chunks are quarantined, so the next backup with that content stores it again."""
    bad: list[str] = []
    for cid in dict.fromkeys(e.chunk for e in manifest.extents if e.chunk is not None):
        try:
            store.verify(cid)
        except KeyError:
            bad.append(cid)
        except CorruptChunk:
            store.quarantine(cid)
            bad.append(cid)
    return bad
