"""Commands reach a real agent process in a lab namespace: file distribution inside its allowed
directory (traversal refused, nothing written), reboot and shutdown through the simulated power
driver, and a clear error once the machine is offline."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys

import pytest

from dpm_runtime.testing import eventually, netlab
from dpm_runtime.testing.services import running
from dpm_schemas.events import AgentCommandCompleted, AgentCommandIssued

from .conftest import ENROLMENT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2"),
]


async def test_files_power_and_offline(api_service, gateway_service, auth, tmp_path) -> None:
    files, outside = tmp_path / "files", tmp_path / "outside"
    files.mkdir()
    outside.mkdir()
    (files / "out").symlink_to(outside)  # a link inside the allowed directory that leads out of it
    gateway = gateway_service(
        agent_gateway_heartbeat_interval=0.5, agent_gateway_heartbeat_timeout=2.0, http_host="0.0.0.0"
    )
    with netlab.NetLab(hosts_wanted=1) as lab:
        (host,) = lab.hosts
        config = tmp_path / "agent.toml"
        config.write_text(
            f'server = "http://{lab.host_ip}:{gateway.port}"\nenrolment_token = "{ENROLMENT}"\n'
            f'state_dir = "{tmp_path / "state"}"\nmacs = ["52:54:0c:00:00:01"]\nhostname = "cmd-1"\n'
            f'inventory = false\nallowed_paths = ["{files}"]\npower_driver = "simulated"\nmax_backoff = 1.0\n'
        )
        agent = None
        try:
            async with running(api_service(), headers=auth) as api, running(gateway):
                # Registered before the agent starts: an agent that enrols first registers itself under
                # its hostname, and the operator's registration of the same name is then refused.
                r = await api.http.post("/machines", json={"name": "cmd-1", "macs": ["52:54:0c:00:00:01"]})
                assert r.status_code == 201, r.text
                machine_id = r.json()["machine_id"]
                with open(tmp_path / "agent.log", "wb") as log:
                    agent = lab.popen(
                        host,
                        [sys.executable, "-m", "dpm_agent", "--config", str(config)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )

                async def machine():
                    return (await api.http.get(f"/machines/{machine_id}")).json()

                await eventually(machine, until=lambda m: m["online"], timeout=30, what="agent online")

                async def command(**body):
                    return await api.http.post(f"/machines/{machine_id}/commands", json=body)

                put = await command(
                    action="put_file",
                    path=str(files / "sub" / "hello.txt"),
                    mode=0o640,
                    content_base64=base64.b64encode(b"hello\x00world").decode(),
                )
                assert put.status_code == 200 and put.json()["ok"], put.text
                assert (files / "sub" / "hello.txt").read_bytes() == b"hello\x00world"
                assert oct((files / "sub" / "hello.txt").stat().st_mode & 0o777) == oct(0o640)
                listed = await command(action="list_dir", path=str(files / "sub"))
                assert [(e["name"], e["type"], e["size"]) for e in listed.json()["entries"]] == [
                    ("hello.txt", "file", 11)
                ]

                for path in (
                    str(files / ".." / "escape.txt"),
                    "relative/escape.txt",
                    str(files / "out" / "x.txt"),
                    "/etc/dpm-escape",
                    str(files),
                ):
                    bad = await command(action="put_file", path=path, content_base64="eA==")
                    assert bad.status_code == 422 and bad.json()["error"]["code"] == "DPM-E122", (path, bad.text)
                assert not (tmp_path / "escape.txt").exists() and os.listdir(outside) == []
                assert not os.path.exists("/etc/dpm-escape")
                bad = await command(action="list_dir", path=str(outside))
                assert bad.status_code == 422
                assert (await command(action="delete_file", path=str(files))).status_code == 422

                gone = await command(action="delete_file", path=str(files / "sub" / "hello.txt"))
                assert gone.status_code == 200 and not (files / "sub" / "hello.txt").exists()

                sessions_before = (tmp_path / "agent.log").read_text().count("online as machine")
                assert (await command(action="reboot")).status_code == 200
                await eventually(
                    lambda: asyncio.sleep(0, (tmp_path / "agent.log").read_text().count("online as machine")),
                    until=lambda n: n > sessions_before,
                    timeout=20,
                    what="back after reboot",
                )
                assert (await command(action="shutdown")).status_code == 200
                assert await asyncio.to_thread(agent.wait, 15) == 0  # the simulated machine is off
                await eventually(machine, until=lambda m: not m["online"], timeout=10, what="offline after shutdown")
                offline = await command(action="list_dir", path=str(files))
                assert offline.status_code == 409 and offline.json()["error"]["code"] == "DPM-E120"

                log = [
                    e.event
                    for e in await api.runtime.eventlog.read_all()
                    if isinstance(e.event, AgentCommandIssued | AgentCommandCompleted)
                ]
                actions = [e.action for e in log if isinstance(e, AgentCommandIssued)]
                assert actions[:2] == ["put_file", "list_dir"] and actions[-3:] == ["reboot", "shutdown", "list_dir"]
                assert [e.code for e in log if isinstance(e, AgentCommandCompleted)][-1] == "DPM-E120"
            power_log = (tmp_path / "state" / "power.log").read_text().split()
            assert power_log[1::2] == ["reboot", "shutdown"]
        finally:
            if agent is not None and agent.poll() is None:
                agent.kill()
                agent.wait()
