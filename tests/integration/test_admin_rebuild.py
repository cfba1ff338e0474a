"""`POST /admin/projections/{service.projection}/rebuild` and `dpm admin rebuild`: the api rebuilds
its own projections at once (200), and asks the service that owns any other registered projection
(202, a request that service's RebuildWorker carries out, followed with `GET /admin/rebuilds/{id}`).
A request nobody takes stays pending; the CLI gives up after ``--timeout`` with DPM-E038."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from dpm_runtime.eventlog import ANY_VERSION, Conn
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_runtime.settings import ServiceSettings
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent
from dpm_schemas.envelope import RecordedEvent
from dpm_schemas.events import Probe

from .conftest import TOKEN

pytestmark = pytest.mark.integration


class Seen:
    """The read model of a service other than the api: only that service has its code."""

    name = "seen"
    schema = "notes"
    tables = ("seen",)
    event_types = ("Probe",)

    def ddl(self, schema: str) -> str:
        return f'CREATE TABLE IF NOT EXISTS "{schema}".seen (seq int PRIMARY KEY);'

    async def apply(self, conn: Conn, schema: str, events: Sequence[RecordedEvent]) -> None:
        for rec in events:
            assert isinstance(rec.event, Probe)
            await conn.execute(f'INSERT INTO "{schema}".seen VALUES (%s) ON CONFLICT DO NOTHING', (rec.event.seq,))


def notes_service(database, nats_server) -> Service:
    settings = ServiceSettings(
        database_url=SecretStr(database.service_url), nats_url=nats_server.url, relay_enabled=False
    )

    def wire(_rt: Runtime) -> Wiring:
        return Wiring(projections=[Seen()])

    return Service(name="notes", settings=settings, port=free_port(), app=FastAPI(), wire=wire)


async def dpm(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a thread: the services it talks to run on this test's event loop."""
    env = {**os.environ, "DPM_API_URL": url, "DPM_API_TOKEN": TOKEN, "DPM_SESSION_FILE": os.devnull + ".none"}
    argv = [sys.executable, "-m", "dpm_cli", *args]
    return await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60)


async def test_another_services_projection_is_rebuilt_by_that_service(api_service, auth, database, nats_server) -> None:
    async with running(api_service(), headers=auth) as api, running(notes_service(database, nats_server)) as notes:
        assert (await api.http.get("/machines")).status_code == 200  # the token's first use: an event first
        news = [NewEvent(Probe(writer=0, seq=s), Metadata.new(actor="test")) for s in (1, 2, 3)]
        head = (await api.runtime.eventlog.append("probe-a", ANY_VERSION, news)).position
        assert await notes.runtime.projections["seen"].wait_for(head, timeout=10)

        own = await api.http.post("/admin/projections/api.machines/rebuild")
        assert own.status_code == 200 and own.json()["name"] == "api.machines", own.text
        asked = await api.http.post("/admin/projections/notes.seen/rebuild")
        assert asked.status_code == 202, asked.text
        request = asked.json()
        assert (request["projection"], request["service"], request["requested_by"]) == (
            "notes.seen",
            "notes",
            "bootstrap",
        )
        assert asked.headers["location"] == f"/admin/rebuilds/{request['id']}"

        async def state() -> dict:
            r = await api.http.get(f"/admin/rebuilds/{request['id']}")
            assert r.status_code == 200, r.text
            return r.json()

        done = await eventually(state, until=lambda r: r["status"] == "done", what="rebuilt by notes", timeout=15)
        assert (done["events"], done["position"], done["error"]) == (3, head, None)

        cli = await dpm(api.url, "admin", "rebuild", "notes.seen", "--timeout", "20")
        assert cli.returncode == 0 and cli.stdout.startswith("rebuilt notes.seen: 3 events"), cli.stderr
        listed = (await api.http.get("/admin/projections", params={"all": "true"})).json()
        assert {p["name"]: p["service"] for p in listed}["notes.seen"] == "notes"

        unknown = await api.http.post("/admin/projections/notes.nope/rebuild")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "DPM-E020"
        missing = await api.http.get("/admin/rebuilds/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "DPM-E036"

    async with running(api_service(), headers=auth) as api:  # notes is down: its request waits
        cli = await dpm(api.url, "admin", "rebuild", "notes.seen", "--timeout", "1")
        assert cli.returncode == 1 and "DPM-E038" in cli.stderr and "pending" in cli.stderr, cli.stderr
