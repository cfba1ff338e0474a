"""Issue 21 items 5, 6 and 11 (stored size), against the real api and imager: a backup's lock on its
image name is a short lease that its uploads and heartbeat renew, released on every failure the
client sees and by an operator's ``dpm images unlock``; an aborted backup's chunks are collected
at once when the store ran out of space or an operator asks (``dpm images gc``), not after the
grace period and the next timer, while an open backup's are kept however old; temporary files are
swept; and the stored size an image lists survives an imager restart."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime

import pytest

from dpm_agent.deploy.jobs import run_backup
from dpm_agent.deploy.remote import TransferGrant
from dpm_cli import images as cli_images
from dpm_cli.client import CliError
from dpm_imagefmt.chunks import chunk_id, thread_codec
from dpm_imagefmt.manifest import Extent, Manifest
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import subjects
from dpm_schemas.errors import DpmError, E
from dpm_schemas.events import TransferAborted, TransferRenewed
from dpm_schemas.events.imaging import image_id
from dpm_schemas.ids import stream_id

from .conftest import TOKEN

pytestmark = pytest.mark.integration


async def _grant(a, name: str, direction: str = "backup", expect: int = 201):
    answer = await a.http.post("/images/transfers", json={"image": name, "direction": direction})
    assert answer.status_code == expect, answer.text
    return TransferGrant.from_json(answer.json()) if expect == 201 else answer.json()["error"]


def _as(grant: TransferGrant) -> dict[str, str]:
    return {"Authorization": f"Bearer {grant.token}"}


async def _upload(i, grant: TransferGrant, data: bytes) -> tuple[str, int]:
    cid, blob = chunk_id(data), thread_codec().pack(data)
    put = await i.http.put(f"/v1/transfers/{grant.transfer_id}/chunks/{cid}", content=blob, headers=_as(grant))
    assert put.status_code == 204, put.text
    return cid, len(blob)


def _manifest(*chunks: str) -> bytes:
    extents = tuple(Extent(n * 1024, 1024, c) for n, c in enumerate(chunks))
    return Manifest("disk", "full", 1024 * len(chunks), 512, {"label": None}, None, extents, "d" * 64).encode()


def _seconds_left(grant_doc: dict) -> float:
    return (datetime.fromisoformat(grant_doc["expires_at"]) - datetime.now().astimezone()).total_seconds()


async def test_a_backup_holds_its_name_on_a_short_lease_and_frees_it_on_every_failure(
    api_service, imager_service, auth, tmp_path, monkeypatch
) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        # the lease, not the 6 hours a restore token may idle
        backup = (await a.http.post("/images/transfers", json={"image": "lab/l", "direction": "backup"})).json()
        assert 250 < _seconds_left(backup) <= 300
        as_backup = {"Authorization": f"Bearer {backup['token']}"}
        aborted = await i.http.post(f"/v1/transfers/{backup['transfer_id']}/abort", json={}, headers=as_backup)
        assert aborted.is_success, aborted.text

        # a device that is not there fails before anything is read: the name is free at once
        grant = await _grant(a, "lab/l")
        with pytest.raises(DpmError):
            await asyncio.to_thread(run_backup, str(tmp_path / "no-such-disk"), grant, mode="full")
        events = await a.runtime.eventlog.read_stream(stream_id(subjects.IMAGE, image_id("lab/l")))
        assert isinstance(events[-1].event, TransferAborted) and str(events[-1].event.transfer_id) == grant.transfer_id
        # ... and so does a disk whose partition table cannot be read
        disk = tmp_path / "disk.img"
        disk.write_bytes(bytes(1024 * 1024))

        def unreadable(dev):
            raise E.LAYOUT_UNREADABLE(device=dev.path, reason="bad GPT header CRC")

        monkeypatch.setattr("dpm_agent.deploy.jobs.read_layout", unreadable)
        grant = await _grant(a, "lab/l")
        with pytest.raises(DpmError) as err:
            await asyncio.to_thread(run_backup, str(disk), grant, mode="full")
        assert err.value.code == "DPM-E161"
        await _grant(a, "lab/l")  # not DPM-E160: the failed backup let go


async def test_the_heartbeat_renews_the_lease(api_service, imager_service, auth) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}", api_transfer_ttl=2.0)
    async with running(api, headers=auth) as a, running(imager) as i:
        grant = await _grant(a, "lab/beat")
        await asyncio.sleep(0.8)  # past a quarter of the 2 s lease: the next use renews it
        beat = await i.http.post(f"/v1/transfers/{grant.transfer_id}/renew", json={}, headers=_as(grant))
        assert beat.status_code == 200, beat.text
        events = await a.runtime.eventlog.read_stream(stream_id(subjects.IMAGE, image_id("lab/beat")))
        assert any(isinstance(r.event, TransferRenewed) for r in events)
        assert datetime.fromisoformat(beat.json()["expires_at"]).timestamp() > time.time() + 1.5


async def test_an_operator_unlocks_a_name_a_dead_backup_holds(
    api_service, imager_service, auth, monkeypatch, capsys
) -> None:
    imager = imager_service(imager_gc_grace=3600)
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        holder = await _grant(a, "lab/dead")
        cid, _ = await _upload(i, holder, b"\x07" * 1024)
        busy = await _grant(a, "lab/dead", expect=409)
        assert busy["code"] == "DPM-E160" and "dpm images unlock lab/dead" in busy["remedy"]

        monkeypatch.setenv("DPM_API_URL", a.url)
        monkeypatch.setenv("DPM_API_TOKEN", TOKEN)
        await asyncio.to_thread(cli_images.images_unlock, "lab/dead")
        assert f"backup {holder.transfer_id} aborted" in capsys.readouterr().out
        await asyncio.to_thread(cli_images.images_unlock, "lab/dead")  # idempotent
        assert "was not locked" in capsys.readouterr().out

        again = await _grant(a, "lab/dead")  # free now
        refused = await eventually(
            lambda: i.http.post(f"/v1/transfers/{holder.transfer_id}/missing", json={"ids": []}, headers=_as(holder)),
            until=lambda r: r.status_code == 410,
            what="the revoked token is refused",
        )
        assert refused.json()["error"]["code"] == "DPM-E167" and "unlocked by" in refused.json()["error"]["message"]
        # its chunk is kept for a resume (the grace period is an hour here) until an operator's gc
        store = imager.app.state.imager.store
        assert store.path(cid).exists()
        gc = await a.http.post("/images/gc", params={"wait": 20})
        assert gc.status_code == 200 and gc.json()["collected"]["chunks"] == 1, gc.text
        assert not store.path(cid).exists()
        # a viewer may not unlock
        await a.http.post("/users", json={"username": "vera", "password": "viewer-secret-1", "role": "viewer"})
        login = await a.http.post("/auth/login", json={"username": "vera", "password": "viewer-secret-1"}, headers={})
        denied = await a.http.post(
            "/images/lab/dead/unlock", headers={"Authorization": f"Bearer {login.json()['token']}"}
        )
        assert denied.status_code == 403
        assert (await i.http.post(f"/v1/transfers/{again.transfer_id}/abort", json={}, headers=_as(again))).is_success


async def test_an_abort_for_want_of_space_collects_its_chunks_now_and_an_open_backup_keeps_its_own(
    api_service, imager_service, auth
) -> None:
    imager = imager_service(imager_gc_grace=3600)  # the production default: the timer would wait an hour
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        store = imager.app.state.imager.store
        first = await _grant(a, "lab/a1")
        second = await _grant(a, "lab/a2")
        mine, _ = await _upload(i, first, b"\x01" * 1024)
        shared, _ = await _upload(i, first, b"\x02" * 1024)
        asked = await i.http.post(f"/v1/transfers/{second.transfer_id}/missing", json={"ids": [shared]},
                                  headers=_as(second))  # fmt: skip
        assert asked.json()["missing"] == []  # the second backup will name it: it must stay
        old = time.time() - 7200  # older than any grace period: only the vouchers protect them now
        for cid in (mine, shared):
            os.utime(store.path(cid), (old, old))
        imager.app.state.imager.reserve_bytes = 1 << 62  # the disk fills up: the next upload is refused
        refused = await i.http.put(f"/v1/transfers/{first.transfer_id}/chunks/{chunk_id(b'x')}",
                                   content=thread_codec().pack(b"x"), headers=_as(first))  # fmt: skip
        assert refused.status_code == 507 and refused.json()["error"]["code"] == "DPM-E159"
        assert "dpm images gc" in refused.json()["error"]["remedy"]
        abort = await i.http.post(f"/v1/transfers/{first.transfer_id}/abort", json={"reason": "disk full"},
                                  headers=_as(first))  # fmt: skip
        assert abort.status_code == 200, abort.text

        await eventually(lambda: asyncio.sleep(0, not store.path(mine).exists()), timeout=15, what="abort collected")
        assert store.path(shared).exists()
        commit = await i.http.post(f"/v1/transfers/{second.transfer_id}/commit", content=_manifest(shared),
                                   headers=_as(second))  # fmt: skip
        assert commit.status_code == 200, commit.text


async def test_stale_temporary_files_are_swept_at_start(imager_service, tmp_path) -> None:
    imager = imager_service(imager_root=tmp_path / "store")
    chunks = tmp_path / "store" / "chunks" / "ab"
    chunks.mkdir(parents=True)
    stale, fresh = chunks / f".ab{'0' * 62}.1.2.tmp", chunks / f".ab{'1' * 62}.1.2.tmp"
    for f in (stale, fresh):
        f.write_bytes(b"half a chunk")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    async with running(imager):
        await eventually(lambda: asyncio.sleep(0, not stale.exists()), timeout=20, what="stale .tmp swept")
        assert fresh.exists()  # a write in progress keeps its file


async def test_the_stored_size_counts_chunks_sent_before_an_imager_restart(
    api_service, imager_service, auth, tmp_path
) -> None:
    first = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{first.port}")
    async with running(api, headers=auth) as a:
        async with running(first) as i:
            grant = await _grant(a, "lab/restart")
            before, size1 = await _upload(i, grant, os.urandom(1024))
        second = imager_service(imager_root=tmp_path / "store")  # the same store, a new process
        async with running(second) as i:
            after, size2 = await _upload(i, grant, os.urandom(1024))
            commit = await i.http.post(f"/v1/transfers/{grant.transfer_id}/commit",
                                       content=_manifest(before, after), headers=_as(grant))  # fmt: skip
            assert commit.status_code == 200, commit.text
            assert commit.json()["stored_bytes"] == size1 + size2

            async def listed() -> list:
                return [r for r in (await a.http.get("/images")).json() if r["name"] == "lab/restart"]

            rows = await eventually(listed, what="the api lists the image")
            assert rows[0]["stored_bytes"] == size1 + size2


async def test_dpm_images_gc_collects_now_and_says_what_went(
    api_service, imager_service, auth, monkeypatch, capsys
) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager):
        collector = imager.app.state.collector
        await eventually(lambda: asyncio.sleep(0, collector.last is not None), timeout=20, what="start-up collection")
        store = imager.app.state.imager.store
        stray = chunk_id(b"\x09" * 1024)  # in no image and no backup: what a crash between upload and voucher leaves
        store.put(stray, thread_codec().pack(b"\x09" * 1024))
        assert (await a.http.post("/images/gc")).json()["collected"] is None  # no wait asked: just the request
        await eventually(lambda: asyncio.sleep(0, not store.path(stray).exists()), what="the requested collection")

        store.put(stray, thread_codec().pack(b"\x09" * 1024))
        monkeypatch.setenv("DPM_API_URL", a.url)
        monkeypatch.setenv("DPM_API_TOKEN", TOKEN)
        await asyncio.to_thread(cli_images.images_gc, 30)
        assert "collected 1 chunks" in capsys.readouterr().out
        assert not store.path(stray).exists()

        late = await a.http.post("/images/gc", params={"wait": 1e-9})  # asked; its figures cannot be back yet
        assert late.status_code == 202 and late.json()["pending"]["code"] == "DPM-E196", late.text
        with pytest.raises(CliError, match="DPM-E196"):
            await asyncio.to_thread(cli_images.images_gc, 1e-9)
