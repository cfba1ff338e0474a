"""Images end to end over real HTTP: the api grants transfers, the deploy client backs a real disk
image up into the imager and restores it, and the imager keeps the promises of the store --
dedup, resume, atomic commit, one writer per name, verification, garbage collection."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from pathlib import Path

import pytest

from agent.tests.deploy.disks import blank, mkext4, need_tools, sfdisk, sha256, tree
from dpm_agent.deploy.jobs import run_backup, run_restore
from dpm_agent.deploy.remote import RemoteStore, TransferGrant
from dpm_imagefmt.manifest import Extent, Manifest
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import subjects
from dpm_schemas.errors import DpmError
from dpm_schemas.events import ImageCaptured, TransferAborted
from dpm_schemas.events.imaging import image_id
from dpm_schemas.ids import stream_id

pytestmark = [pytest.mark.integration, need_tools]
MiB = 1024 * 1024


def _disk(tmp_path: Path) -> Path:
    disk = blank(tmp_path / "disk.img", 40 * MiB)
    sfdisk(str(disk), "label: gpt\nsize=30MiB, type=L\n")
    mkext4(disk, 1 * MiB, 30 * MiB, tree(tmp_path / "content"))
    with open(disk, "r+b") as f:  # incompressible data in the filesystem's free space too
        f.seek(20 * MiB)
        f.write(random.Random(4).randbytes(8 * MiB))
    return disk


async def _grant(api, name: str, direction: str, expect: int = 201) -> TransferGrant | dict:
    answer = await api.http.post("/images/transfers", json={"image": name, "direction": direction})
    assert answer.status_code == expect, answer.text
    return TransferGrant.from_json(answer.json()) if expect == 201 else answer.json()["error"]


class FailingAfter(RemoteStore):
    """The network goes away after ``n`` chunk uploads (a backup interrupted half-way)."""

    def __init__(self, grant: TransferGrant, n: int) -> None:
        super().__init__(grant)
        self.n = n

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        if self.n <= 0:
            raise ConnectionResetError("link down")
        sent, self.n = items[: self.n], self.n - len(items)
        super().put_many(sent)
        if self.n < 0:
            raise ConnectionResetError("link down")


async def test_backup_restore_dedup_resume_busy_verify_delete(
    api_service, imager_service, auth, tmp_path, monkeypatch
) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    disk = _disk(tmp_path)
    async with running_both(api, imager, auth) as (a, _i):
        eventlog = a.runtime.eventlog
        # a first backup (full-sector), then a byte-identical restore onto a used disk
        grant = await _grant(a, "lab/disk1", "backup")
        first = await asyncio.to_thread(run_backup, str(disk), grant, mode="full")
        assert first["stats"]["sent_chunks"] > 10

        async def listed() -> list:
            return (await a.http.get("/images")).json()

        rows = await eventually(listed, timeout=10, what="the api lists the image")
        assert [r["name"] for r in rows] == ["lab/disk1"] and rows[0]["captured_bytes"] == 40 * MiB
        target = tmp_path / "target.img"
        target.write_bytes(b"\x5a" * 40 * MiB)
        await asyncio.to_thread(run_restore, str(target), await _grant(a, "lab/disk1", "restore"))
        assert sha256(target) == sha256(disk)

        # unchanged disk: only the manifest moves
        again = await asyncio.to_thread(run_backup, str(disk), await _grant(a, "lab/disk1", "backup"), mode="full")
        assert again["stats"]["sent_chunks"] == 0 and again["stored_bytes"] == 0

        # one writer per name: a second backup of lab/disk1 waits for the first to end
        holder = await _grant(a, "lab/disk1", "backup")
        busy = await _grant(a, "lab/disk1", "backup", expect=409)
        assert busy["code"] == "DPM-E160"
        await asyncio.to_thread(RemoteStore(holder).abort, "operator changed their mind")

        # an interrupted backup of a changed disk leaves the old image; the retry sends only the rest
        before = sha256(disk)
        with open(disk, "r+b") as f:
            f.seek(4 * MiB)
            f.write(random.Random(8).randbytes(12 * MiB))
        cut = await _grant(a, "lab/disk1", "backup")
        monkeypatch.setattr("dpm_agent.deploy.jobs.RemoteStore", lambda g: FailingAfter(g, 5))
        with pytest.raises(ConnectionResetError):
            await asyncio.to_thread(run_backup, str(disk), cut, mode="full")
        monkeypatch.undo()
        aborted = [r.event for r in await eventlog.read_stream(stream_id(subjects.IMAGE, image_id("lab/disk1")))]
        assert isinstance(aborted[-1], TransferAborted) and aborted[-1].transfer_id == uuid_of(cut)
        old = tmp_path / "old.img"
        blank(old, 40 * MiB)
        await asyncio.to_thread(run_restore, str(old), await _grant(a, "lab/disk1", "restore"))
        assert sha256(old) == before  # the name still points at the last committed backup
        resumed = await asyncio.to_thread(run_backup, str(disk), await _grant(a, "lab/disk1", "backup"), mode="full")
        assert resumed["stats"]["reused_chunks"] >= 5 + first["stats"]["sent_chunks"] // 2
        assert resumed["stats"]["sent_chunks"] > 0

        # a flipped byte is found, named, and quarantined; the restore refuses; the next backup heals
        verdict = (await a.http.post("/images/lab/disk1/verify")).json()
        assert verdict["ok"] and verdict["chunks"] > 10
        store = imager.app.state.imager.store
        victim = sorted(imager.app.state.imager.manifest(current((await a.http.get("/images")).json(), "lab/disk1"))
                        .chunk_ids)[0]  # fmt: skip
        blob = bytearray(store.path(victim).read_bytes())
        blob[-1] ^= 0xFF
        store.path(victim).write_bytes(bytes(blob))
        verdict = (await a.http.post("/images/lab/disk1/verify")).json()
        assert verdict["corrupt"] == [victim] and not verdict["ok"]

        async def marked() -> bool:
            rows = (await a.http.get("/images")).json()
            return any(r["verified_ok"] is False and r["corrupt"] == [victim] for r in rows)

        await eventually(marked, timeout=10, what="the list shows the failed verification")
        with pytest.raises(DpmError) as err:
            await asyncio.to_thread(run_restore, str(blank(tmp_path / "x.img", 40 * MiB)),
                                    await _grant(a, "lab/disk1", "restore"))  # fmt: skip
        assert err.value.code == "DPM-E157" and victim in err.value.message
        healed = await asyncio.to_thread(run_backup, str(disk), await _grant(a, "lab/copy", "backup"), mode="full")
        assert healed["stats"]["sent_chunks"] == 1  # only the quarantined chunk travels again
        assert (await a.http.post("/images/lab/disk1/verify")).json()["ok"]
        shown = (await a.http.get("/images")).json()

        # deletion: the name goes, and garbage collection removes only what no image uses
        copy_chunks = set(imager.app.state.imager.manifest(current(shown, "lab/copy")).chunk_ids)
        assert (await a.http.delete("/images/lab/disk1")).status_code == 200
        assert (await a.http.get("/images/lab/disk1")).status_code == 404

        async def collected() -> bool:
            return set(store.chunk_ids()) == copy_chunks

        await eventually(collected, timeout=20, what="unreferenced chunks collected")
        restored = blank(tmp_path / "copy.img", 40 * MiB)
        await asyncio.to_thread(run_restore, str(restored), await _grant(a, "lab/copy", "restore"))
        assert sha256(restored) == sha256(disk)
        captured = [r.event for r in await eventlog.read_stream(stream_id(subjects.IMAGE, image_id("lab/copy")))]
        assert isinstance(captured[0], ImageCaptured) and captured[0].stored_bytes < 4 * MiB  # deduplicated


async def test_transfer_tokens_and_bad_input(api_service, imager_service, auth, tmp_path) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    disk = _disk(tmp_path)
    async with running_both(api, imager, auth) as (a, i):
        missing = await _grant(a, "never/made", "restore", expect=404)
        assert missing["code"] == "DPM-E158"
        bad = await _grant(a, "../../etc/passwd", "backup", expect=422)
        assert bad["code"] == "DPM-E162"
        assert (
            await a.http.post("/images/transfers", json={"image": "x/{machine}", "direction": "backup"})
        ).status_code == 422
        grant = await _grant(a, "lab/t", "backup")
        await asyncio.to_thread(run_backup, str(disk), grant, mode="used")
        restore = await _grant(a, "lab/t", "restore")
        base = f"/v1/transfers/{restore.transfer_id}"
        as_restore = {"Authorization": f"Bearer {restore.token}"}
        chunk = "0" * 64
        assert (await i.http.put(f"{base}/chunks/{chunk}", content=b"x", headers=as_restore)).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert (await i.http.get(f"{base}/manifest", headers=wrong)).status_code == 401
        assert (await i.http.get(f"{base}/manifest")).status_code == 401
        other = (await i.http.get(f"{base}/chunks/{chunk}", headers=as_restore)).json()["error"]
        assert other["code"] == "DPM-E162"  # a restore token reads its own image's chunks only
        traversal = await i.http.get(f"{base}/chunks/..%2F..%2Fetc%2Fpasswd", headers=as_restore)
        assert traversal.status_code in (404, 422)
        grant2 = await _grant(a, "lab/t2", "backup")
        as_backup = {"Authorization": f"Bearer {grant2.token}"}
        b2 = f"/v1/transfers/{grant2.transfer_id}"
        full = await i.http.post(f"{b2}/start", json={"planned_bytes": 10**18}, headers=as_backup)
        assert full.status_code == 507 and full.json()["error"]["code"] == "DPM-E159"
        lie = await i.http.put(f"{b2}/chunks/{'a' * 64}", content=b"\x28\xb5\x2f\xfd garbage", headers=as_backup)
        assert lie.json()["error"]["code"] == "DPM-E157"  # verified on write: never stored
        assert not imager.app.state.imager.store.path("a" * 64).exists()
        huge = await i.http.put(f"{b2}/chunks/{'b' * 64}", content=b"\0" * (3 * MiB), headers=as_backup)
        assert huge.json()["error"]["code"] == "DPM-E100"  # larger than any chunk can be: refused unread
        incomplete = await i.http.post(f"{b2}/commit", content=await manifest_naming_absent_chunk(), headers=as_backup)
        assert incomplete.json()["error"]["code"] == "DPM-E163"
        assert (await a.http.get("/images/lab/t2")).status_code == 404


async def manifest_naming_absent_chunk() -> bytes:
    m = Manifest("disk", "full", 10, 512, {"label": None}, None, (Extent(0, 10, "c" * 64),), "d" * 64)
    return m.encode()


def uuid_of(grant: TransferGrant) -> uuid.UUID:
    return uuid.UUID(grant.transfer_id)


def current(rows: list[dict], name: str) -> str:
    return next(r["manifest"] for r in rows if r["name"] == name)


@contextlib.asynccontextmanager
async def running_both(api, imager, auth):
    async with running(api, headers=auth) as a, running(imager) as i:
        yield a, i
