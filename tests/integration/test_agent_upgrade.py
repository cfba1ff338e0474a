"""Agent self-upgrade end to end (issue 14; seed catalog: the agent's version must be the server's,
§10.2 item 44): a real agent process, started from a copy of its source whose version is old, and the
agent's own package (``dpm-agent``, a script package that unpacks the current agent source over that
copy) registered in the updater.

- Automatic: the outdated agent comes online, gets the package with no scenario, restarts itself
  into the new code (the same process, re-executed) and says hello at the server's version; the
  machine is no longer shown as outdated.
- Before a remote update: an outdated agent gets the upgrade first; the step waits for the new
  agent's hello, then delivers its own packages -- installed by the new agent.
- A failing upgrade fails the held step with DPM-E217, and the machine stays shown as outdated.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import dpm_agent
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas.version import DPM_VERSION

from .conftest import ENROLMENT, run_until_done
from .test_remote_update import upload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OLD = "0.0.9"
MAC = "52:54:0d:00:0a:01"
SOURCE = Path(dpm_agent.__file__).parent


def old_agent(into: Path) -> None:
    """The agent's source as a machine of an earlier release runs it: the same code, an older version."""
    shutil.rmtree(into / "dpm_agent", ignore_errors=True)
    shutil.copytree(SOURCE, into / "dpm_agent", ignore=shutil.ignore_patterns("__pycache__"))
    init = into / "dpm_agent/__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{DPM_VERSION}"', f'__version__ = "{OLD}"'))


def agent_tarball() -> bytes:
    """The current agent's source, as the agent package carries it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(SOURCE, arcname="dpm_agent", filter=lambda t: None if "__pycache__" in t.name else t)
    return out.getvalue()


class AgentProcess:
    """The agent as its machine runs it: ``python -m dpm_agent`` from the copy under ``code``."""

    def __init__(self, tmp_path: Path, gateway_port: int) -> None:
        self.code = tmp_path / "agent-code"
        self.code.mkdir()
        self.config = tmp_path / "agent.toml"
        self.config.write_text(
            f'server = "http://127.0.0.1:{gateway_port}"\nenrolment_token = "{ENROLMENT}"\n'
            f'state_dir = "{tmp_path / "state"}"\nmacs = ["{MAC}"]\nhostname = "upg-1"\n'
            f'install_root = "{tmp_path / "root"}"\nmax_backoff = 1.0\ninstall_poll = 1.0\n'
        )
        self.log = tmp_path / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        old_agent(self.code)
        env = {**os.environ, "PYTHONPATH": str(self.code), "PYTHONDONTWRITEBYTECODE": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dpm_agent", "--config", str(self.config)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


async def test_an_outdated_agent_upgrades_itself_and_remote_updates_wait_for_it(
    api_service, scheduler_service, updater_service, gateway_service, auth, tmp_path
) -> None:
    gateway = gateway_service(agent_gateway_heartbeat_interval=0.5, agent_gateway_heartbeat_timeout=5.0)
    port = free_port()
    updater_url = f"http://127.0.0.1:{port}"
    agent = AgentProcess(tmp_path, gateway.port)
    async with (
        running(api_service(api_updater_url=updater_url), headers=auth) as api,
        running(scheduler_service(scheduler_tick=0.1)),
        running(updater_service(updater_port=port, updater_public_url=updater_url)),
        running(gateway),
    ):
        made = await api.http.post("/machines", json={"name": "upg-1", "macs": [MAC]})
        assert made.status_code == 201, made.text
        api.machine_id = made.json()["machine_id"]
        tarball = await upload(api, updater_url, agent_tarball(), "dpm-agent.tar")
        upgrade = {
            "id": "dpm-agent", "type": "script", "system_version": DPM_VERSION,
            "execution": {"files": ["dpm-agent.tar"], "command": f"tar -xf dpm-agent.tar -C {agent.code}"},
        }  # fmt: skip
        body = {"definition": upgrade, "upload_id": tarball, "file_name": "dpm-agent.tar"}
        r = await api.http.post("/packages", json=body)
        assert r.status_code == 201, r.text
        older = {**upgrade, "system_version": OLD}  # never a downgrade
        refused = await api.http.post("/packages", json={**body, "definition": older})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "DPM-E216", refused.text
        try:
            agent.start()
            await check_automatic_upgrade(api, agent)
            await check_upgrade_before_a_remote_update(api, agent)
            await check_failed_upgrade(api, agent, upgrade)
        finally:
            agent.stop()


async def machine(api) -> dict:
    r = await api.http.get(f"/machines/{api.machine_id}")
    return r.json() if r.status_code == 200 else {}


async def history(api) -> list[dict]:
    return (await api.http.get("/machines/upg-1/updates")).json()["updates"]


async def check_automatic_upgrade(api, agent: AgentProcess) -> None:
    pid = agent.proc.pid if agent.proc else None
    got = await eventually(lambda: machine(api), until=lambda m: m.get("agent_version") == DPM_VERSION,
                           timeout=90, what="the agent at the server's version")  # fmt: skip
    assert got["online"] and not got["agent_outdated"], got
    assert "restarting into it" in agent.text()  # the same process, re-executed into the new code
    assert agent.proc is not None and agent.proc.pid == pid and agent.proc.poll() is None
    (done,) = [u for u in await history(api) if u["package_id"] == "dpm-agent"]
    assert done["ok"], done


async def restart_old(api, agent: AgentProcess) -> None:
    """The machine back at the old release (its agent reinstalled from an old image)."""
    agent.stop()
    agent.start()
    await eventually(lambda: machine(api), until=lambda m: m.get("agent_version") == OLD and m["online"],
                     timeout=60, what="the old agent back")  # fmt: skip


async def check_upgrade_before_a_remote_update(api, agent: AgentProcess) -> None:
    """The old agent is back; automatic delivery had this revision already, so only the step upgrades
    it. The step's own package is installed by the new agent: its script records the version of the
    agent that runs it (DPM_AGENT_VERSION, which the agent gives every installer)."""
    await restart_old(api, agent)
    marker = agent.code.parent / "after.txt"
    record = f"sh -c 'echo $DPM_AGENT_VERSION > {marker}'"  # the version of the agent running the install
    after = {"id": "after-upgrade", "type": "script", "execution": {"command": record}}
    assert (await api.http.post("/packages", json={"definition": after})).status_code == 201
    spec = {"kind": "remote-update", "timeout_seconds": 300, "params": {"packages": "after-upgrade"}}
    assert (await api.http.post("/scenarios", json={"name": "upg-after", "spec": spec})).status_code == 201
    (done,) = await run_until_done(api.http, "upg-after", {"machines": ["upg-1"]}, 1, timeout=180)
    assert done["state"] == "completed", done
    assert marker.read_text().strip() == DPM_VERSION
    assert (await machine(api))["agent_version"] == DPM_VERSION
    upgrades = [u for u in await history(api) if u["package_id"] == "dpm-agent"]
    assert len(upgrades) == 2 and all(u["ok"] for u in upgrades), upgrades
    installs = sorted(await history(api), key=lambda u: u["position"])
    assert [u["package_id"] for u in installs][-2:] == ["dpm-agent", "after-upgrade"]


async def check_failed_upgrade(api, agent: AgentProcess, upgrade: dict) -> None:
    """A broken agent package: the held step fails with DPM-E217 and the machine stays outdated."""
    broken = {**upgrade, "execution": {"command": "sh -c 'echo no room >&2; exit 4'"}}
    assert (await api.http.post("/packages", json={"definition": broken})).status_code == 201
    await restart_old(api, agent)
    await eventually(
        lambda: history(api),
        until=lambda h: any(u["package_id"] == "dpm-agent" and not u["ok"] for u in h),
        timeout=60, what="the automatic upgrade failed",
    )  # fmt: skip
    (failed,) = await run_until_done(api.http, "upg-after", {"machines": ["upg-1"]}, 1, timeout=120)
    assert (failed["state"], failed["code"]) == ("failed", "DPM-E217"), failed
    assert "no room" in failed["reason"] or "DPM-E234" in failed["reason"], failed
    got = await machine(api)
    assert got["agent_version"] == OLD and got["agent_outdated"], got
