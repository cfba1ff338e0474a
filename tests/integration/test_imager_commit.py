"""Issue 12 item 8: the imager's commit checks the manifest before storing anything, commits a
transfer exactly once however many calls race, and refuses chunks the transfer never vouched for."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
import zstandard

from dpm_agent.deploy.remote import TransferGrant
from dpm_imagefmt.chunks import chunk_id, thread_codec
from dpm_imagefmt.manifest import Extent, Manifest
from dpm_runtime.testing.services import running
from dpm_schemas import subjects
from dpm_schemas.events import ImageCaptured
from dpm_schemas.events.imaging import image_id
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration


async def _grant(api, name: str) -> TransferGrant:
    answer = await api.http.post("/images/transfers", json={"image": name, "direction": "backup"})
    assert answer.status_code == 201, answer.text
    return TransferGrant.from_json(answer.json())


def _manifest(*chunks: str, size: int = 4096) -> bytes:
    extents = tuple(Extent(i * 1024, 1024, c) for i, c in enumerate(chunks))
    return Manifest("disk", "full", size, 512, {"label": None}, None, extents, "d" * 64).encode()


def _zjson(doc: object) -> bytes:
    return zstandard.ZstdCompressor().compress(json.dumps(doc).encode())


async def _upload(i, grant: TransferGrant, data: bytes) -> str:
    cid = chunk_id(data)
    put = await i.http.put(
        f"/v1/transfers/{grant.transfer_id}/chunks/{cid}",
        content=thread_codec().pack(data),
        headers={"Authorization": f"Bearer {grant.token}"},
    )
    assert put.status_code == 204, put.text
    return cid


async def test_malformed_manifests_are_refused_and_leave_nothing(api_service, imager_service, auth) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        store = imager.app.state.imager.store
        grant = await _grant(a, "lab/bad")
        headers = {"Authorization": f"Bearer {grant.token}"}
        good = json.loads(zstandard.ZstdDecompressor().decompress(_manifest()))
        bad_bodies = [
            b"not zstd at all",
            zstandard.ZstdCompressor().compress(b"{not json"),
            _zjson([1, 2, 3]),
            _zjson({**good, "layout": ["a list"]}),
            _zjson({**good, "extents": [[0, 10, "../../etc/passwd"]]}),
            _zjson({**good, "extents": [[0, 10, {"x": 1}]]}),
            _zjson({**good, "source": "tape"}),
            _zjson({**good, "digest": "nothex"}),
            _zjson({**good, "layout": {"label": "gpt\u0000"}}),
            _zjson({**good, "size": 2**70}),  # beyond what the log's readers (bigint) hold
            # int(1e400) is OverflowError, 100,000 brackets a RecursionError in the parser: both were 500s
            zstandard.ZstdCompressor().compress(json.dumps(good).replace('"size": 4096', '"size": 1e400').encode()),
            zstandard.ZstdCompressor().compress(b"[" * 100_000 + b"]" * 100_000),
        ]
        for body in bad_bodies:
            answer = await i.http.post(f"/v1/transfers/{grant.transfer_id}/commit", content=body, headers=headers)
            assert answer.status_code == 422, (body[:40], answer.text)
            assert answer.json()["error"]["code"] == "DPM-E117"
        assert list(store.manifest_ids()) == []  # nothing stored
        # the transfer is still usable: a valid commit goes through
        cid = await _upload(i, grant, b"\x01" * 1024)
        ok = await i.http.post(f"/v1/transfers/{grant.transfer_id}/commit", content=_manifest(cid), headers=headers)
        assert ok.status_code == 200, ok.text


async def test_parallel_commits_of_one_transfer_record_one_capture(api_service, imager_service, auth) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        grant = await _grant(a, "lab/race")
        headers = {"Authorization": f"Bearer {grant.token}"}
        cid = await _upload(i, grant, b"\x02" * 1024)
        blob = _manifest(cid)
        answers = await asyncio.gather(
            *(
                i.http.post(f"/v1/transfers/{grant.transfer_id}/commit", content=blob, headers=headers)
                for _ in range(10)
            )
        )
        codes = sorted(r.status_code for r in answers)
        assert codes[0] == 200 and codes.count(200) == 1, [r.text for r in answers]
        refused = [r.json()["error"]["code"] for r in answers if r.status_code != 200]
        assert set(refused) <= {"DPM-E118", "DPM-E160"} and len(refused) == 9  # E160: the token's transfer ended
        events = await a.runtime.eventlog.read_stream(stream_id(subjects.IMAGE, image_id("lab/race")))
        assert sum(isinstance(r.event, ImageCaptured) for r in events) == 1


async def test_a_manifest_may_name_only_chunks_the_transfer_vouched_for(api_service, imager_service, auth) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        # another backup stores a chunk (say, another machine's disk)
        other = await _grant(a, "lab/other")
        secret = await _upload(i, other, b"secret" * 200)
        body = _manifest(secret)
        as_other = {"Authorization": f"Bearer {other.token}"}
        assert (
            await i.http.post(f"/v1/transfers/{other.transfer_id}/commit", content=body, headers=as_other)
        ).is_success

        # a backup naming that chunk without uploading it or asking about it is refused
        thief = await _grant(a, "lab/thief")
        as_thief = {"Authorization": f"Bearer {thief.token}"}
        own = await _upload(i, thief, b"\x03" * 1024)
        answer = await i.http.post(
            f"/v1/transfers/{thief.transfer_id}/commit", content=_manifest(own, secret), headers=as_thief
        )
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "DPM-E119", answer.text
        assert (await a.http.get("/images/lab/thief")).status_code == 404
        # dedup keeps working: asking `missing` about a stored chunk vouches for it
        asked = await i.http.post(
            f"/v1/transfers/{thief.transfer_id}/missing", json={"ids": [secret]}, headers=as_thief
        )
        assert asked.json() == {"missing": []}
        answer = await i.http.post(
            f"/v1/transfers/{thief.transfer_id}/commit", content=_manifest(own, secret), headers=as_thief
        )
        assert answer.status_code == 200, answer.text


async def test_a_cancelled_commit_whose_capture_is_logged_keeps_its_manifest(
    api_service, imager_service, auth, monkeypatch
) -> None:
    """Item 8 review: a cancellation after the append committed (while the images read model has
    not caught up) used to delete the manifest the logged ImageCaptured points to."""
    from dpm_imagefmt.manifest import manifest_id
    from dpm_imager import commit as rules
    from dpm_imager.adapters.readmodel import transfer_by_token

    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        im = imager.app.state.imager
        grant = await _grant(a, "lab/cancelled")
        cid = await _upload(i, grant, b"\x04" * 1024)
        async with im.rt.pool.connection() as conn:
            t = await transfer_by_token(conn, hashlib.sha256(grant.token.encode()).hexdigest(), grant.transfer_id)
        blob = _manifest(cid)
        manifest = rules.check_manifest(blob, t.image)
        captured = rules.captured(t, manifest, manifest_id(blob), 1024)
        real_append = rules._append

        async def append_then_cancelled(*args, **kwargs):
            await real_append(*args, **kwargs)
            raise asyncio.CancelledError  # the client went away just after the log took the commit

        async def lagging(_imager):
            return []  # the read model has not applied the ImageCaptured yet

        monkeypatch.setattr(rules, "_append", append_then_cancelled)
        monkeypatch.setattr(rules, "_live_manifests", lagging)
        with pytest.raises(asyncio.CancelledError):
            await rules._store_and_append(im, t, captured, blob, await rules.still_open(im.rt.eventlog, t))
        events = await a.runtime.eventlog.read_stream(stream_id(subjects.IMAGE, image_id("lab/cancelled")))
        assert [r.event.manifest for r in events if isinstance(r.event, ImageCaptured)] == [captured.manifest]
        assert captured.manifest in set(im.store.manifest_ids())  # what the log names is still there
