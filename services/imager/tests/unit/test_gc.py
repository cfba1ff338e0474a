"""The chunk store's collection on a real directory (no PostgreSQL): live and held chunks stay
whatever their age, an aborted backup's go without the grace period, others after it; a failed
write leaves no temporary file, and stale ones are swept."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from dpm_imagefmt.chunks import chunk_id, thread_codec
from dpm_imagefmt.manifest import Extent, Manifest
from dpm_imagefmt.store import DirStore
from dpm_imager.adapters import gc


def _put(store: DirStore, data: bytes, age: float = 0) -> str:
    cid = chunk_id(data)
    store.put(cid, thread_codec().pack(data))
    if age:
        then = time.time() - age
        os.utime(store.path(cid), (then, then))
    return cid


def test_what_stays_and_what_goes(tmp_path: Path) -> None:
    store = DirStore(tmp_path).open()
    live = _put(store, b"\x01" * 1024, age=7200)
    held = _put(store, b"\x02" * 1024, age=7200)  # an open backup found it present: it will name it
    doomed = _put(store, b"\x03" * 1024)  # an aborted backup's, just uploaded
    _put(store, b"\x04" * 1024, age=7200)  # a stray: nobody's, past the grace period
    young = _put(store, b"\x05" * 1024)  # nobody's yet (an upload whose voucher is being written)
    m = Manifest("disk", "full", 1024, 512, {"label": None}, None, (Extent(0, 1024, live),), "d" * 64).encode()
    mid = chunk_id(m)
    store.put_manifest(mid, m)

    done = gc.collect(store, [mid], 3600, held={held}, doomed={doomed, held})
    assert set(store.chunk_ids()) == {live, held, young}
    assert (done.chunks, done.manifests) == (2, 0)


def test_a_failed_write_leaves_no_temporary_file_and_stale_ones_are_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DirStore(tmp_path).open()
    data = b"\x06" * 1024

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("dpm_imagefmt.store.os.replace", full)
    with pytest.raises(OSError):
        store.put(chunk_id(data), thread_codec().pack(data))
    monkeypatch.undo()
    assert list(tmp_path.rglob("*.tmp")) == []

    stale = store.chunks / "ab" / f".ab{'0' * 62}.1.2.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    fresh = store.manifests / f".{'1' * 64}.1.2.tmp"
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert gc.collect(store, [], 0).temporary == 1
    assert not stale.exists() and fresh.exists()
