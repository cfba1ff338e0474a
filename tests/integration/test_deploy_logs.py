"""Deploy logs (issue 15, ADR 0015) against a real api and pxe: the deploy client's ``logs`` upload
with the token pxe gave out, read back by an operator as a bundle and as text; accepted for a grace
after the step ended, refused past it, from another client and for another execution; an oversize or
malformed bundle refused with its code; hostile content served as inert text; the next run's upload
replaces the previous run's."""

from __future__ import annotations

import asyncio
import io
import tarfile
import uuid
from datetime import timedelta

import httpx
import pytest

from dpm_agent.deploy.logs import send_logs
from dpm_agent.deploy.run import BootParams
from dpm_api.deploy_auth import LOG_GRACE
from dpm_runtime.testing import ManualClock as Clock
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import subjects
from dpm_schemas.events import DeployLogUploaded, ExecutionCompleted, ExecutionQueued, NetbootRequested
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id

from .test_boot_security import MAC, _deploy_setup, _script, _token, append, events_of, from_address

pytestmark = pytest.mark.integration
HOSTILE = b"@@T 1.23 init\n<script>alert(1)</script>\x1b[2J\x1b]0;owned\x07 bell\x00nul\r\nstep report: progress 0%\n"


def _bundle(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def _upload(url: str, execution, token: str, tmp_path, *, client_log: bool = True) -> tuple[bool, str]:
    console = tmp_path / "console.log"
    console.write_bytes(HOSTILE)
    client = tmp_path / "client.log"
    client.write_text("INFO step report: completed 100%\n")
    params = BootParams(str(execution), url, token)
    return await asyncio.to_thread(send_logs, params, console, client if client_log else None, retry_for=5)


async def test_the_deploy_client_uploads_its_logs_and_an_operator_reads_them(
    api_service, pxe_service, auth, tmp_path
) -> None:
    api = api_service()
    pxe = pxe_service(pxe_api_url=f"http://127.0.0.1:{api.port}")
    clock = Clock()
    api.app.state.clock = clock
    async with running(api, headers=auth) as a, running(pxe) as p:
        eventlog = a.runtime.eventlog
        machine_id, execution = await _deploy_setup(a, eventlog)
        token = _token(await _script(p))
        bearer = {"Authorization": f"Bearer {token}"}
        step = await a.http.get("/deploy/v1/step", params={"execution_id": str(execution)}, headers=bearer)
        assert step.status_code == 200
        missing = await a.http.get(f"/executions/{execution}/logs")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "DPM-E443"
        assert "uploaded none" in missing.json()["error"]["message"]

        # the step ends first (the client's final report); the upload comes after, within the grace
        done = ExecutionCompleted(execution_id=execution, machine_id=machine_id)
        await append(eventlog, stream_id(subjects.EXECUTION, execution), done)

        async def ended() -> bool:
            r = await a.http.get("/deploy/v1/step", params={"execution_id": str(execution)}, headers=bearer)
            return r.status_code == 401

        await eventually(ended, timeout=10, what="the step is over for the token")
        clock.advance(seconds=60)
        kept, said = await _upload(a.url, execution, token, tmp_path)
        assert kept, said

        text = await a.http.get(f"/executions/{execution}/logs", params={"part": "console"})
        assert text.status_code == 200
        assert text.headers["content-type"] == "text/plain; charset=utf-8"
        assert text.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in text.headers["content-security-policy"]
        body = text.text
        assert "@@T 1.23 init" in body and "<script>alert(1)</script>" in body  # text, never markup
        assert "\x1b" not in body and "\x07" not in body and "\x00" not in body and "\r" not in body
        assert "^[[2J" in body and "^G bell^@nul" in body
        client = await a.http.get(f"/executions/{execution}/logs", params={"part": "client"})
        assert "step report: completed 100%" in client.text
        whole = await a.http.get(f"/executions/{execution}/logs")
        assert whole.status_code == 200 and whole.headers["content-type"] == "application/gzip"
        assert whole.headers["content-disposition"].startswith("attachment;")
        with tarfile.open(fileobj=io.BytesIO(whole.content), mode="r:gz") as tar:
            assert sorted(tar.getnames()) == ["client.log", "console.log", "dmesg.log"]
        step_events = await events_of(eventlog, stream_id(subjects.STEP, execution))
        facts = [e for e in step_events if isinstance(e, DeployLogUploaded)]
        assert len(facts) == 1 and facts[0].machine_id == machine_id and facts[0].size == len(whole.content)
        bad = await a.http.get(f"/executions/{execution}/logs", params={"part": "kernel"})
        assert bad.status_code in (400, 422)

        async with from_address(a.url, "127.0.0.2") as other:  # the token copied to another host
            r = await other.put("/deploy/v1/logs", params={"execution_id": str(execution)}, headers=bearer,
                                content=_bundle({"console.log": b"forged"}))  # fmt: skip
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E134"
        await _refusals(a.http, execution, bearer)

        clock.advance(seconds=11 * 60)  # past the grace after its last call: refused, and nothing changed
        kept, said = await _upload(a.url, execution, token, tmp_path)
        assert not kept and "DPM-E134" in said, said
        assert (await a.http.get(f"/executions/{execution}/logs")).content == whole.content

        await _the_next_run_replaces_it(a, p, eventlog, machine_id, execution, token, tmp_path)


async def _refusals(http: httpx.AsyncClient, execution, bearer: dict[str, str]) -> None:
    put = {"params": {"execution_id": str(execution)}, "headers": bearer}
    big = await http.put("/deploy/v1/logs", content=b"\0" * (16 * 1024 * 1024 + 1), **put)
    assert big.status_code == 413 and big.json()["error"]["code"] == "DPM-E442", big.text
    for junk in (b"not a tarball", _bundle({"../etc/passwd": b"x"}), _bundle({"dmesg.log": b"no console"})):
        r = await http.put("/deploy/v1/logs", content=junk, **put)
        assert r.status_code == 422 and r.json()["error"]["code"] == "DPM-E444", r.text
    anonymous = await http.put("/deploy/v1/logs", content=b"x", params=put["params"], headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def _the_next_run_replaces_it(a, p, eventlog, machine_id, first, first_token: str, tmp_path) -> None:
    """A second execution of the machine: its token does not upload for the first, its upload replaces
    the first's log, and the first then answers 404 saying so."""
    _, second = await _deploy_setup_again(a, eventlog, machine_id)
    token = await eventually(lambda: _new_token(p, first_token), timeout=10, what="a token for the next run")
    kept, said = await _upload(a.url, first, token, tmp_path)  # this run's token, the other execution
    assert not kept and "DPM-E401" in said, said
    kept, said = await _upload(a.url, second, token, tmp_path, client_log=False)
    assert kept, said
    gone = await a.http.get(f"/executions/{first}/logs")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "DPM-E443"
    assert str(second) in gone.json()["error"]["message"]
    part = await a.http.get(f"/executions/{second}/logs", params={"part": "client"})
    assert part.status_code == 404 and part.json()["error"]["code"] == "DPM-E445"


async def _deploy_setup_again(a, eventlog, machine_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    execution = uuid.uuid4()
    queued = ExecutionQueued(
        execution_id=execution, run_id=uuid.uuid4(), machine_id=machine_id, scenario_id=uuid.uuid4(), revision=1,
        name="backup", spec=ScenarioSpec(kind=ScenarioKind.BACKUP, params=(("image", "img-{name}"),)),
    )  # fmt: skip
    await append(eventlog, stream_id(subjects.EXECUTION, execution), queued,
                 NetbootRequested(machine_id=machine_id, execution_id=execution))  # fmt: skip
    return machine_id, execution


async def _new_token(p, old: str) -> str | None:
    text = (await p.http.get(f"/boot/{MAC}.ipxe")).text
    return None if "dpm.token=" not in text or _token(text) == old else _token(text)


def test_the_grace_is_minutes_not_hours() -> None:
    assert timedelta(minutes=1) <= LOG_GRACE <= timedelta(minutes=30)
