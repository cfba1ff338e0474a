"""Garbage collection and verification of the chunk store (blocking; run in a worker thread).

A chunk is garbage when no live image's manifest names it, no open backup may name it (``held``:
its vouchers, adapters/vouchers.py) *and* it is older than the grace period -- or, without the
wait, when an aborted or expired backup uploaded it (``doomed``: the collector passes those when
the store ran short of space or an operator asked, so a disk-full abort frees its space now
rather than after the grace period and the next timer; otherwise a resume reuses them). A held
chunk is kept however old: a backup longer than the grace period used to lose its first chunks
before it committed. Replaced manifests go after the grace
period (``MANIFEST_AGE`` at least). Temporary files a failed or interrupted write left
(``.<id>.<pid>.<thread>.tmp``) go once older than ``STALE_TMP``: no write takes that long, and
nothing else ever removes them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dpm_imagefmt.chunks import CorruptChunk
from dpm_imagefmt.manifest import Manifest
from dpm_imagefmt.store import DirStore

STALE_TMP = 600.0  # seconds: a temporary file older than this belongs to no write in progress
# A commit stores its manifest before ImageCaptured names it: never collect one younger than this,
# however short the grace period (collections now also run at start-up and on every abort).
MANIFEST_AGE = 600.0


@dataclass(frozen=True)
class Collected:
    chunks: int
    bytes: int
    manifests: int
    temporary: int = 0


def collect(
    store: DirStore,
    live_manifests: Iterable[str],
    grace: float,
    *,
    held: frozenset[str] | set[str] = frozenset(),
    doomed: frozenset[str] | set[str] = frozenset(),
) -> Collected:
    keep = set(live_manifests)
    live: set[str] = set(held)
    for mid in keep:
        live |= Manifest.decode(store.get_manifest(mid)).chunk_ids
    now = time.time()
    cutoff = now - grace
    chunks = freed = manifests = 0
    for cid in list(store.chunk_ids()):
        if cid not in live and (cid in doomed or _older(store.path(cid), cutoff)):
            freed += store.delete(cid)
            chunks += 1
    for mid in list(store.manifest_ids()):
        if mid not in keep and _older(store.manifests / mid, min(cutoff, now - MANIFEST_AGE)):
            store.delete_manifest(mid)
            manifests += 1
    return Collected(chunks, freed, manifests, sweep_temporary(store, now - STALE_TMP))


def sweep_temporary(store: DirStore, cutoff: float) -> int:
    """Remove the temporary files of writes that failed or were interrupted before ``cutoff``."""
    removed = 0
    for d in [store.manifests, *(p for p in store.chunks.iterdir() if p.is_dir())]:
        for f in d.glob(".*.tmp"):
            if _older(f, cutoff):
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:  # removed meanwhile (another replica, a quarantine)
        return False


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
