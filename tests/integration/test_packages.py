"""Packages end to end over real sockets, PostgreSQL and NATS (issue 14): the api opens an upload,
the updater takes the bytes in resumable pieces (tus: HEAD for the offset, PATCH from there), keeps
the content once under its SHA-256, and the api registers revisions that name it; the machines'
inventories and the applicability verdicts come back over the api."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import uuid
from pathlib import Path

import httpx
import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import InventoryReported, PackageContentStored, PackageUploadAborted
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration

OCTETS = {"Content-Type": "application/offset+octet-stream"}


async def open_upload(api, data: bytes, *, sha256: str | None = "") -> dict:
    body = {"size": len(data), "file_name": "hello.deb"}
    if sha256 is not None:
        body["sha256"] = sha256 or hashlib.sha256(data).hexdigest()
    r = await api.http.post("/packages/uploads", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def send(http: httpx.AsyncClient, up: dict, data: bytes, offset: int, token: str | None = None):
    headers = {**OCTETS, "Upload-Offset": str(offset), "Authorization": f"Bearer {token or up['token']}"}
    return await http.patch(f"/v1/uploads/{up['upload_id']}", content=data, headers=headers)


async def held(http: httpx.AsyncClient, up: dict) -> int:
    r = await http.head(f"/v1/uploads/{up['upload_id']}", headers={"Authorization": f"Bearer {up['token']}"})
    assert r.status_code == 200, r.text
    return int(r.headers["Upload-Offset"])


def code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


async def test_an_upload_resumes_after_a_cut_and_an_updater_restart_then_registers_revisions(
    api_service, updater_service, auth, tmp_path
) -> None:
    data = os.urandom(3 << 20) + b"end"
    digest = hashlib.sha256(data).hexdigest()
    first = updater_service()
    async with running(api_service(), headers=auth) as api:
        async with running(first) as up1:
            upload = await open_upload(api, data)
            assert (await send(up1.http, upload, data[: 1 << 20], 0)).status_code == 204
            assert await held(up1.http, upload) == 1 << 20
            wrong = await send(up1.http, upload, data[2 << 20 :], 2 << 20)
            assert wrong.status_code == 409 and code(wrong) == "DPM-E270"  # resumes only where the copy ends
        second = updater_service(updater_root=tmp_path / "packages")  # a restarted updater, same store
        async with running(second) as up2:
            assert await held(up2.http, upload) == 1 << 20
            done = await send(up2.http, upload, data[1 << 20 :], 1 << 20)
            assert done.status_code == 200 and done.json()["sha256"] == digest, done.text
            assert (await send(up2.http, upload, b"x", len(data))).status_code == 410  # closed: DPM-E273

        kept = tmp_path / "packages" / "sha256" / digest[:2] / digest
        assert kept.read_bytes() == data
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
        assert list((tmp_path / "packages" / "uploads").iterdir()) == []

        definition = {"id": "hello", "type": "deb", "system_package": "hello", "system_version": "2.10-3"}
        r = await api.http.post("/packages", json={"definition": definition, "upload_id": upload["upload_id"]})
        assert r.status_code == 201, r.text
        shown = r.json()
        assert shown["package"]["revision"] == 1 and shown["content"] == {
            "sha256": digest,
            "size": len(data),
            "file_name": "",
        }
        again = await api.http.post("/packages", json={"definition": definition, "expected_revision": 1})
        assert again.status_code == 201 and again.json()["package"]["revision"] == 2
        stale = await api.http.post("/packages", json={"definition": definition, "expected_revision": 1})
        assert stale.status_code == 409 and code(stale) == "DPM-E278"
        listed = (await api.http.get("/packages")).json()
        assert [p["package"]["id"] for p in listed] == ["hello"]
        assert (await api.http.delete("/packages/hello")).status_code == 200
        assert code(await api.http.get("/packages/hello")) == "DPM-E276"


async def test_bad_uploads_are_refused_with_codes_and_keep_nothing(
    api_service, updater_service, auth, tmp_path
) -> None:
    data = b"package bytes" * 1000
    async with running(api_service(), headers=auth) as api, running(updater_service()) as up:
        liar = await open_upload(api, data, sha256="0" * 64)
        r = await send(up.http, liar, data, 0)
        assert r.status_code == 422 and code(r) == "DPM-E272"
        stream = await api.runtime.eventlog.read_stream(stream_id(subjects.CONTENT, uuid.UUID(liar["upload_id"])))
        assert [type(e.event) for e in stream] == [PackageUploadAborted]
        assert not (tmp_path / "packages" / "uploads" / f"{liar['upload_id']}.part").exists()
        named = await api.http.post(
            "/packages", json={"definition": {"id": "x", "type": "deb"}, "upload_id": liar["upload_id"]}
        )
        assert named.status_code == 409 and code(named) == "DPM-E275"

        upload = await open_upload(api, data, sha256=None)
        over = await send(up.http, upload, data + b"!", 0)
        assert over.status_code == 413 and code(over) == "DPM-E271"
        forged = await send(up.http, upload, data, 0, token="not-the-token")
        assert forged.status_code == 401
        typed = await up.http.patch(
            f"/v1/uploads/{upload['upload_id']}",
            content=data,
            headers={"Upload-Offset": "0", "Authorization": f"Bearer {upload['token']}"},
        )
        assert typed.status_code == 422 and code(typed) == "DPM-E100"  # raw bytes only, never a body parsed as JSON
        pending = await api.http.post(
            "/packages", json={"definition": {"id": "y", "type": "deb"}, "upload_id": upload["upload_id"]}
        )
        assert pending.status_code == 409 and code(pending) == "DPM-E275"

        bad = await api.http.post("/packages", json={"definition": {"id": "no spaces", "type": "deb"}})
        assert bad.status_code == 400 and code(bad) == "DPM-E200"


async def test_two_parallel_requests_on_one_upload_store_it_once(api_service, updater_service, auth) -> None:
    data = os.urandom(1 << 20)
    async with running(api_service(), headers=auth) as api, running(updater_service()) as up:
        upload = await open_upload(api, data)
        answers = await asyncio.gather(*(send(up.http, upload, data, 0) for _ in range(4)))
        assert sorted(r.status_code for r in answers).count(200) == 1, [r.text for r in answers]
        assert {code(r) for r in answers if r.status_code != 200} <= {"DPM-E270", "DPM-E273", "DPM-E280"}
        stream = await api.runtime.eventlog.read_stream(stream_id(subjects.CONTENT, uuid.UUID(upload["upload_id"])))
        assert [type(e.event) for e in stream] == [PackageContentStored]


async def test_inventory_and_what_applies_to_a_machine(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        r = await api.http.post("/machines", json={"name": "web-01", "macs": ["52:54:00:00:00:21"]})
        assert r.status_code == 201, r.text
        machine_id = uuid.UUID(r.json()["machine_id"])
        assert code(await api.http.get("/machines/web-01/inventory")) == "DPM-E279"
        reported = InventoryReported(
            machine_id=machine_id, os="Debian GNU/Linux 12", kernel="6.1.0", packages=("hello=2.10-2",), digest="d1"
        )
        done = await api.runtime.eventlog.append(
            stream_id(subjects.AGENT, machine_id),
            ANY_VERSION,
            [NewEvent(reported, Metadata.new(actor="agent-gateway"))],
        )
        await api.runtime.projections["inventories"].wait_for(done.position)
        inventory = (await api.http.get("/machines/web-01/inventory")).json()
        assert inventory["os"] == "Debian GNU/Linux 12" and inventory["packages"] == ["hello=2.10-2"]
        for version in ("2.10-3", "2.10-1"):
            package_id = f"hello-{version.replace('.', '_')}"
            body = {"id": package_id, "type": "deb", "system_package": "hello", "system_version": version}
            assert (await api.http.post("/packages", json={"definition": body})).status_code == 201
        verdicts = (await api.http.get("/machines/web-01/packages")).json()
        by_id = {p["package_id"]: p for p in verdicts["packages"]}
        assert by_id["hello-2_10-3"]["verdict"] in ("installable", "applicable"), by_id
        assert by_id["hello-2_10-1"]["verdict"] not in ("installable", "applicable"), by_id
        assert verdicts["install_order"] == ["hello-2_10-3"]


def test_the_store_layout_is_private(tmp_path: Path) -> None:
    from dpm_updater.adapters.content import ContentStore

    store = ContentStore(tmp_path / "p").open()
    assert {stat.S_IMODE(p.stat().st_mode) for p in (store.root, store.uploads, store.objects)} == {0o700}


async def test_the_cli_adds_a_package_resuming_where_the_updater_copy_ends(
    api_service, updater_service, auth, tmp_path, monkeypatch, capsys
) -> None:
    """`dpm packages add FILE`: an earlier attempt left 1 MiB in the store (its answer lost): the CLI's
    first piece is refused with DPM-E270, it asks where the copy ends and sends only the rest."""
    from dpm_cli import packages as cli

    data = os.urandom((2 << 20) + 12345)
    deb = tmp_path / "hello_2.10-3_amd64.deb"
    deb.write_bytes(data)
    updater = updater_service()
    async with (
        running(api_service(api_updater_url=f"http://127.0.0.1:{updater.port}"), headers=auth) as api,
        running(updater) as up,
    ):
        monkeypatch.setenv("DPM_API_URL", api.url)
        monkeypatch.setenv("DPM_API_TOKEN", auth["Authorization"].split()[1])
        monkeypatch.setattr(cli, "PIECE", 1 << 20)
        grant = await open_upload(api, data)
        assert (await send(up.http, grant, data[: 1 << 20], 0)).status_code == 204
        real_request = cli.request
        monkeypatch.setattr(
            cli, "request", lambda m, p, **kw: grant if p == "/packages/uploads" else real_request(m, p, **kw)
        )
        await asyncio.to_thread(cli.packages_add, deb, "hello", "deb", None, "high", "hello", "2.10-3", None, False)
        assert "registered hello revision 1" in capsys.readouterr().out
        shown = (await api.http.get("/packages/hello")).json()
        assert shown["content"]["sha256"] == hashlib.sha256(data).hexdigest() and shown["package"]["urgency"] == "high"
        assert shown["content"]["file_name"] == deb.name

        await asyncio.to_thread(cli.packages_ls, False)
        assert "hello" in capsys.readouterr().out
        with pytest.raises(cli.CliError) as refused:
            await asyncio.to_thread(cli.packages_add, None, "bad id", "deb", None, None, None, None, None, False)
        assert "DPM-E200" in str(refused.value)
