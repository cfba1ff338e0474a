"""The machines' update history over real PostgreSQL and NATS (issue 14): every PackageInstallReported
on a ``delivery-<execution>`` stream becomes a row of ``api.update_history``, trimmed to the newest
DPM_API_UPDATE_HISTORY_KEEP per machine; the routes list it per machine and across machines (newest
first, filtered, limited), a viewer may read it, the CSV is safe to open in a spreadsheet, and a
rebuild gives the same rows. `dpm updates history` prints it and writes the CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import PackageInstallReported
from dpm_schemas.events.packages import PackageOutcome
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration

HOSTILE = "=cmd|' /C calc'!A0"


async def machine(api, name: str, mac: str) -> uuid.UUID:
    r = await api.http.post("/machines", json={"name": name, "macs": [mac]})
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["machine_id"])


async def reported(api, machine_id: uuid.UUID, *outcomes: PackageOutcome, execution_id: uuid.UUID | None = None):
    """One delivery's outcomes, appended as the updater does; the position, once projected."""
    execution_id = execution_id or uuid.uuid4()
    meta = Metadata.new(actor=f"agent:{machine_id}")
    events = [PackageInstallReported(execution_id=execution_id, machine_id=machine_id, outcome=o) for o in outcomes]
    done = await api.runtime.eventlog.append(
        stream_id(subjects.DELIVERY, execution_id), ANY_VERSION, [NewEvent(e, meta) for e in events]
    )
    assert await api.runtime.projections["update_history"].wait_for(done.position, timeout=10)
    return done.position


def ok(package_id: str, revision: int = 1, **kw) -> PackageOutcome:
    return PackageOutcome(package_id=package_id, revision=revision, ok=True, exit_code=0, **kw)


def failed(package_id: str, message: str = "the install script failed", **kw) -> PackageOutcome:
    return PackageOutcome(package_id=package_id, revision=1, ok=False, code="DPM-E234", exit_code=3, message=message,
                          **kw)  # fmt: skip


def code(r) -> str:
    return str(r.json()["error"]["code"])


async def viewer(api) -> dict[str, str]:
    await api.http.post("/users", json={"username": "vera", "password": "vera-secret-1", "role": "viewer"})
    r = await api.http.post("/auth/login", json={"username": "vera", "password": "vera-secret-1"}, headers={})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_history_per_machine_and_across_machines_newest_first_with_filters(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        web, db = await machine(api, "web-01", "52:54:00:00:14:01"), await machine(api, "db-01", "52:54:00:00:14:02")
        assert (await api.http.get("/machines/web-01/updates")).json()["updates"] == []
        first = uuid.uuid4()
        await reported(api, web, ok("hello", output_tail="Setting up hello"), ok("curl"), execution_id=first)
        await reported(api, db, failed("hello", output_tail="E: broken"))
        await reported(api, web, ok("hello", revision=2, reboot_required=True))
        reader = await viewer(api)

        mine = await api.http.get("/machines/web-01/updates", headers=reader)
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert (body["machine"], body["machine_id"], body["keep"]) == ("web-01", str(web), 100)
        assert [(u["package_id"], u["revision"]) for u in body["updates"]] == [("hello", 2), ("curl", 1), ("hello", 1)]
        assert {u["output_tail"] for u in body["updates"]} == {None}  # the big part only when asked for
        newest = body["updates"][0]
        assert newest["reboot_required"] and newest["ok"] and newest["machine"] == "web-01"
        assert newest["reported_at"] and newest["position"] > body["updates"][1]["position"]
        assert body["updates"][2]["execution_id"] == str(first)
        by_id = await api.http.get(f"/machines/{web}/updates", params={"output": "true", "limit": 1})
        assert [u["output_tail"] for u in by_id.json()["updates"]] == [""]
        oldest = (await api.http.get("/machines/web-01/updates", params={"output": "true"})).json()["updates"][-1]
        assert oldest["output_tail"] == "Setting up hello"

        every = (await api.http.get("/updates/history", headers=reader)).json()
        assert [(u["machine"], u["package_id"], u["ok"]) for u in every] == [
            ("web-01", "hello", True),
            ("db-01", "hello", False),
            ("web-01", "curl", True),
            ("web-01", "hello", True),
        ]
        broken = (await api.http.get("/updates/history", params={"result": "failed"})).json()
        assert [(u["machine"], u["code"], u["exit_code"]) for u in broken] == [("db-01", "DPM-E234", 3)]
        hello = await api.http.get("/updates/history", params={"package": "hello", "machine": "web-01", "limit": 1})
        assert [(u["package_id"], u["revision"]) for u in hello.json()] == [("hello", 2)]
        assert [u["package_id"] for u in (await api.http.get("/updates/history?result=ok&machine=db-01")).json()] == []

        assert code(await api.http.get("/machines/nope/updates")) == "DPM-E102"
        assert code(await api.http.get("/updates/history", params={"machine": "nope"})) == "DPM-E102"
        assert code(await api.http.get("/updates/history", params={"result": "maybe"})) == "DPM-E100"
        assert code(await api.http.get("/updates/history", params={"limit": 0})) == "DPM-E100"
        async with httpx.AsyncClient(base_url=api.url) as anonymous:
            assert (await anonymous.get("/updates/history")).status_code == 401


async def test_history_is_trimmed_per_machine_and_a_rebuild_gives_the_same_rows(api_service, auth) -> None:
    async with running(api_service(api_update_history_keep=3), headers=auth) as api:
        web, db = await machine(api, "web-01", "52:54:00:00:14:11"), await machine(api, "db-01", "52:54:00:00:14:12")
        await reported(api, web, ok("p1"), ok("p2"))
        await reported(api, db, ok("d1"))
        await reported(api, web, ok("p3"), failed("p4"))  # four for web-01 in all: p1 goes
        await reported(api, web, failed("p5"))  # p2 goes
        await reported(api, db, ok("d2"))
        again = uuid.uuid4()
        await reported(api, db, failed("d3"), execution_id=again)
        await reported(api, db, ok("d3"), execution_id=again)  # a report sent again replaces its row

        async def rows() -> list[tuple]:
            listed = (await api.http.get("/updates/history", params={"output": "true"})).json()
            return [tuple(sorted(u.items())) for u in listed]

        before = await rows()
        web_rows = (await api.http.get("/machines/web-01/updates")).json()
        assert web_rows["keep"] == 3 and [u["package_id"] for u in web_rows["updates"]] == ["p5", "p4", "p3"]
        db_rows = (await api.http.get("/machines/db-01/updates")).json()["updates"]
        assert [(u["package_id"], u["ok"]) for u in db_rows] == [("d3", True), ("d2", True), ("d1", True)]

        rebuilt = await api.http.post("/admin/projections/api.update_history/rebuild")
        assert rebuilt.status_code == 200, rebuilt.text
        assert rebuilt.json()["name"] == "api.update_history" and rebuilt.json()["events"] == 9
        assert await rows() == before


async def test_the_csv_export_is_safe_to_open_and_has_no_installer_output(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        web = await machine(api, "web-01", "52:54:00:00:14:21")
        await reported(api, web, ok("hello"), failed("evil", message=HOSTILE, output_tail="secret output"))
        reader = await viewer(api)
        r = await api.http.get("/updates/history/export", headers=reader)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
        assert "secret output" not in r.text
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [(row["machine"], row["package_id"], row["result"]) for row in rows] == [
            ("web-01", "evil", "failed"),
            ("web-01", "hello", "ok"),
        ]
        assert rows[0]["message"] == "'" + HOSTILE and rows[0]["code"] == "DPM-E234"
        only = await api.http.get("/updates/history/export", params={"result": "ok"})
        assert [row["package_id"] for row in csv.DictReader(io.StringIO(only.text))] == ["hello"]


async def dpm(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a thread: the api it talks to runs on this test's event loop."""
    env = {**os.environ, "DPM_API_URL": url, "DPM_API_TOKEN": token, "DPM_SESSION_FILE": os.devnull + ".none"}
    argv = [sys.executable, "-m", "dpm_cli", *args]
    return await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60)


async def test_the_cli_prints_the_history_and_writes_the_csv(api_service, auth, tmp_path: Path) -> None:
    async with running(api_service(), headers=auth) as api:
        web = await machine(api, "web-01", "52:54:00:00:14:31")
        await reported(api, web, ok("hello", reboot_required=True), failed("evil", message=HOSTILE))
        token = auth["Authorization"].split()[1]

        shown = await dpm(api.url, token, "updates", "history", "--machine", "web-01")
        assert shown.returncode == 0, shown.stderr
        header, *lines = shown.stdout.splitlines()
        assert header.split()[:6] == ["REPORTED_AT", "MACHINE", "PACKAGE_ID", "REVISION", "RESULT", "CODE"]
        assert [line.split()[2:5] for line in lines] == [["evil", "1", "failed"], ["hello", "1", "ok"]]
        assert "yes" in lines[1] and "DPM-E234" in lines[0]
        only = await dpm(api.url, token, "updates", "history", "--failed", "--package", "evil")
        assert [line.split()[2] for line in only.stdout.splitlines()[1:]] == ["evil"]

        out = tmp_path / "history.csv"
        written = await dpm(api.url, token, "updates", "history", "--csv", str(out))
        assert written.returncode == 0 and f"wrote {out}" in written.stdout, written.stderr
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        assert [row["package_id"] for row in rows] == ["evil", "hello"] and rows[0]["message"] == "'" + HOSTILE

        unknown = await dpm(api.url, token, "updates", "history", "--machine", "nope")
        assert unknown.returncode == 1 and "DPM-E102" in unknown.stderr
