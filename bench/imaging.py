"""Imaging benchmarks: backup and restore of a mixed-content disk image against the plain
pipelines an administrator would use, and the deduplication ratio.

    uv run python -m bench --only imaging [--quick]

The image (2 GiB, or 256 MiB with --quick) is built of 16 MiB stretches: incompressible (media,
already-compressed files), low-entropy text-like bytes, and zeros (free space), in a fixed
shuffled order. Baselines run in the same process tree on the same files, best of ``repeats``:
backup against ``dd | zstd -1`` (then ``sync -f``: a backup is durable before it counts), restore
against ``zstd -d | dd conv=fsync``. Ours is the deploy
client writing to (and reading from) the chunk store on the same machine -- client and store
share the two cores, as they would on a one-box install.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dpm_agent.deploy.backup import backup
from dpm_agent.deploy.device import open_device
from dpm_agent.deploy.layout import read_layout
from dpm_agent.deploy.restore import preflight, restore
from dpm_imagefmt.store import DirStore

Row = Callable[..., dict]
STRETCH = 16 * 1024 * 1024
_TEXT = bytes.maketrans(bytes(range(256)), (b"etaoinshrdlucmwf" * 16))  # 4 bits of entropy per byte


def make_image(path: Path, size: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    kinds = ["random"] * 3 + ["text"] * 4 + ["zero"] * 3
    with open(path, "wb") as f:
        for _ in range(size // STRETCH):
            kind = rnd.choice(kinds)
            if kind == "random":
                f.write(rnd.randbytes(STRETCH))
            elif kind == "text":
                f.write(rnd.randbytes(STRETCH).translate(_TEXT))
            else:
                f.seek(STRETCH, os.SEEK_CUR)
        f.truncate(size)


def change(path: Path, fraction: float, seed: int = 2) -> None:
    """Overwrite ``fraction`` of the image in a few places (a second machine, or next week's disk)."""
    size = path.stat().st_size
    rnd = random.Random(seed)
    with open(path, "r+b") as f:
        for _ in range(4):
            n = int(size * fraction / 4)
            f.seek(rnd.randrange(0, size - n))
            f.write(rnd.randbytes(n))


def _sh(cmd: str) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], check=True)
    return time.perf_counter() - started


def _best(fn: Callable[[], float], repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def imaging_cases(row: Row, *, size_mb: int = 2048, repeats: int = 2) -> list[dict]:
    if shutil.which("zstd") is None:
        print("imaging: zstd not installed; skipped")
        return []
    size = size_mb * 1024 * 1024
    mb = size / 1e6
    results = []
    with tempfile.TemporaryDirectory(prefix="dpm-bench-img-") as tmp:
        work = Path(tmp)
        img, zst, target = work / "disk.img", work / "disk.img.zst", work / "target.img"
        make_image(img, size)
        with open(target, "wb") as f:
            f.truncate(size)

        def base_backup() -> float:
            zst.unlink(missing_ok=True)
            return _sh(f"dd if={img} bs=4M status=none | zstd -1 -q -o {zst} && sync -f {zst}")

        def base_restore() -> float:
            return _sh(f"zstd -d -q -c {zst} | dd of={target} bs=4M conv=notrunc,fsync status=none")

        def ours_backup() -> float:
            shutil.rmtree(work / "store", ignore_errors=True)
            store = DirStore(work / "store").open()
            dev = open_device(str(img))
            started = time.perf_counter()
            manifest, _ = backup(dev, read_layout(dev), store)
            store.sync()
            ours_backup.manifest = manifest  # type: ignore[attr-defined]
            return time.perf_counter() - started

        def ours_restore() -> float:
            store = DirStore(work / "store")
            manifest = ours_backup.manifest  # type: ignore[attr-defined]
            started = time.perf_counter()
            restore(str(target), preflight(manifest, read_layout(open_device(str(target)))), manifest, store)
            return time.perf_counter() - started

        base_b, ours_b = _best(base_backup, repeats), _best(ours_backup, repeats)
        results.append(
            row(f"image backup ({size_mb} MiB mixed), dpm", mb / ours_b, "dd | zstd -1", mb / base_b, unit="MB/s")
        )
        base_r, ours_r = _best(base_restore, repeats), _best(ours_restore, repeats)
        results.append(row("image restore, dpm", mb / ours_r, "zstd -d | dd conv=fsync", mb / base_r, unit="MB/s"))

        store = DirStore(work / "store")
        stored = _du(store)
        zst_size = zst.stat().st_size
        results.append(row("stored size of one image (MB)", stored / 1e6, "zstd -1 file", zst_size / 1e6, unit="MB"))
        dev = open_device(str(img))
        started = time.perf_counter()
        _, again = backup(dev, read_layout(dev), store)
        results.append(row("unchanged second backup", mb / (time.perf_counter() - started), unit="MB/s"))
        print(f"{'':<44} sent {again.sent_chunks} chunks, {again.sent_bytes} bytes", flush=True)
        change(img, 0.10)
        backup(dev, read_layout(dev), store)
        ratio = _du(store) / stored
        results.append(row("store after a 90 %-alike second disk (x one)", ratio, "2 separate files", 2.0, unit="x"))
    return results


def _du(store: DirStore) -> int:
    return sum(f.stat().st_size for f in store.chunks.rglob("*") if f.is_file())
