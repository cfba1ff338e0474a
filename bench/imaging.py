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

import asyncio
import contextlib
import hashlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from psycopg_pool import AsyncConnectionPool

from dpm_agent.deploy.backup import backup
from dpm_agent.deploy.device import open_device
from dpm_agent.deploy.jobs import run_backup, run_restore
from dpm_agent.deploy.layout import read_layout
from dpm_agent.deploy.remote import TransferGrant
from dpm_agent.deploy.restore import preflight, restore
from dpm_imagefmt.store import DirStore
from dpm_runtime.eventlog import EventLog
from dpm_runtime.localstack.procs import free_port
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import TransferOpened
from dpm_schemas.events.imaging import TransferDirection, image_id
from dpm_schemas.ids import stream_id

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


@contextlib.contextmanager
def _workspace(prefix: str, size: int) -> Iterator[tuple[Path, Path, Path, Path]]:
    """(work dir, the mixed image, where its zstd goes, a sparse restore target)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        img, zst, target = work / "disk.img", work / "disk.img.zst", work / "target.img"
        make_image(img, size)
        with open(target, "wb") as f:
            f.truncate(size)
        yield work, img, zst, target


def _baselines(img: Path, zst: Path, target: Path, repeats: int) -> tuple[float, float]:
    """Seconds of the pipelines an administrator would use: ``dd | zstd -1`` (+ sync) and back."""
    backup_s = _best(lambda: _sh(f"dd if={img} bs=4M status=none | zstd -1 -q -f -o {zst} && sync -f {zst}"), repeats)
    restore_s = _best(
        lambda: _sh(f"zstd -d -q -c {zst} | dd of={target} bs=4M conv=notrunc,fsync status=none"), repeats
    )
    return backup_s, restore_s


def imaging_cases(row: Row, *, size_mb: int = 2048, repeats: int = 2) -> list[dict]:
    if shutil.which("zstd") is None:
        print("imaging: zstd not installed; skipped")
        return []
    size = size_mb * 1024 * 1024
    mb = size / 1e6
    results = []
    with _workspace("dpm-bench-img-", size) as (work, img, zst, target):

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

        base_b, base_r = _baselines(img, zst, target, repeats)
        ours_b = _best(ours_backup, repeats)
        results.append(
            row(f"image backup ({size_mb} MiB mixed), dpm", mb / ours_b, "dd | zstd -1", mb / base_b, unit="MB/s")
        )
        ours_r = _best(ours_restore, repeats)
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


async def http_cases(row: Row, *, admin_url: str, service_url: str, nats_url: str, size_mb: int = 2048) -> list[dict]:
    """The production path: the deploy client against the imager as its own process over HTTP
    (loopback), the imager verifying every chunk it receives. Transfers are opened by appending
    TransferOpened as the api would. Baselines re-measured in this run."""
    if shutil.which("zstd") is None:
        return []
    size = size_mb * 1024 * 1024
    mb = size / 1e6
    results = []
    with _workspace("dpm-bench-http-", size) as (work, img, zst, target):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DPM_")}
        env.update(
            DPM_DATABASE_URL=service_url, DPM_DATABASE_ADMIN_URL=admin_url, DPM_NATS_URL=nats_url,
            DPM_IMAGER_PORT=str(port), DPM_IMAGER_ROOT=str(work / "store"), DPM_IMAGER_RESERVE_BYTES="0",
            DPM_RELAY_ENABLED="false", DPM_LOG_LEVEL="WARNING",
        )  # fmt: skip
        with open(work / "imager.log", "wb") as log:
            imager = subprocess.Popen(
                [sys.executable, "-m", "dpm_imager"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            await _ready(f"http://127.0.0.1:{port}/readyz")
            base_b, base_r = _baselines(img, zst, target, 2)
            async with AsyncConnectionPool(service_url, min_size=1, max_size=2, open=False) as pool:
                log = EventLog(pool)
                backup_grant = await _grant(log, port, "bench/disk", TransferDirection.BACKUP)
                started = time.perf_counter()
                await asyncio.to_thread(run_backup, str(img), backup_grant, mode="full")
                ours_b = time.perf_counter() - started
                restore_grant = await _grant(log, port, "bench/disk", TransferDirection.RESTORE)
                started = time.perf_counter()
                await asyncio.to_thread(run_restore, str(target), restore_grant)
                ours_r = time.perf_counter() - started
            results.append(
                row(f"image backup over HTTP ({size_mb} MiB)", mb / ours_b, "dd | zstd -1", mb / base_b, unit="MB/s")
            )
            results.append(
                row("image restore over HTTP", mb / ours_r, "zstd -d | dd conv=fsync", mb / base_r, unit="MB/s")
            )
        finally:
            imager.terminate()
            imager.wait(30)
    return results


async def _ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


async def _grant(log: EventLog, port: int, name: str, direction: TransferDirection) -> TransferGrant:
    token = secrets.token_urlsafe(32)
    opened = TransferOpened(
        transfer_id=uuid.uuid4(), image_id=image_id(name), image=name, direction=direction,
        token_sha256=hashlib.sha256(token.encode()).hexdigest(), expires_at=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    stream = stream_id(subjects.CATALOG, opened.image_id)
    await log.append(stream, None, [NewEvent(opened, Metadata.new(actor="bench"))])
    return TransferGrant(f"http://127.0.0.1:{port}", str(opened.transfer_id), token, name)
