"""Remote update end to end (issue 14): a real agent process in a lab network namespace, with its own
dpkg database in a scratch root, gets packages by scenario through every real component -- the api
(upload, registration, scenario, run), the updater (content, delivery, reports), the scheduler
(execution) and the agent-gateway (the install order). A real ``.deb`` built with dpkg-deb is
installed and shows in the machine's inventory; a failing script fails the execution with its exit
code and output; a re-run on the updated machine has nothing to install."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually, netlab
from dpm_runtime.testing.services import running

from .conftest import ENROLMENT, run_until_done

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2"),
]

MAC = "52:54:0d:00:00:01"


def build_deb(tmp_path: Path, name: str, version: str) -> bytes:
    tree = tmp_path / f"build-{name}"
    (tree / "DEBIAN").mkdir(parents=True)
    control = f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: dpm <t@example>\nDescription: t\n"
    (tree / "DEBIAN/control").write_text(control)
    (tree / f"usr/share/{name}").mkdir(parents=True)
    (tree / f"usr/share/{name}/README").write_text("installed by dpm\n")
    out = tmp_path / f"{name}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)], check=True, capture_output=True)
    return out.read_bytes()


def dpkg_root(tmp_path: Path) -> Path:
    """An empty dpkg database of the machine's own: nothing touches the host's packages."""
    root = tmp_path / "root"
    for d in ("info", "updates"):
        (root / "var/lib/dpkg" / d).mkdir(parents=True)
    for f in ("status", "available"):
        (root / "var/lib/dpkg" / f).touch()
    return root


async def upload(api, updater_url: str, data: bytes, name: str) -> str:
    opened = await api.http.post(
        "/packages/uploads", json={"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "file_name": name}
    )
    assert opened.status_code == 201, opened.text
    up = opened.json()
    headers = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0",
               "Authorization": f"Bearer {up['token']}"}  # fmt: skip
    sent = await api.http.patch(f"{updater_url}/v1/uploads/{up['upload_id']}", content=data, headers=headers)
    assert sent.status_code == 200, sent.text
    return str(up["upload_id"])


async def test_packages_reach_a_real_agent_by_scenario(
    api_service, scheduler_service, updater_service, gateway_service, auth, tmp_path
) -> None:
    gateway = gateway_service(
        agent_gateway_heartbeat_interval=0.5, agent_gateway_heartbeat_timeout=5.0, http_host="0.0.0.0"
    )
    root = dpkg_root(tmp_path)
    deb = build_deb(tmp_path, "hello-dpm", "1.2-3")
    with netlab.NetLab(hosts_wanted=1) as lab:
        (host,) = lab.hosts
        port = free_port()
        updater_url = f"http://{lab.host_ip}:{port}"  # what install orders tell the agent
        updater = updater_service(http_host="0.0.0.0", updater_port=port, updater_public_url=updater_url)
        config = tmp_path / "agent.toml"
        config.write_text(
            f'server = "http://{lab.host_ip}:{gateway.port}"\nenrolment_token = "{ENROLMENT}"\n'
            f'state_dir = "{tmp_path / "state"}"\nmacs = ["{MAC}"]\nhostname = "upd-1"\n'
            f'install_root = "{root}"\npower_driver = "simulated"\nmax_backoff = 1.0\ninstall_poll = 1.0\n'
            f'allowed_paths = ["{tmp_path / "files"}"]\n'
        )
        agent = None
        async with (
            running(api_service(api_updater_url=updater_url), headers=auth) as api,
            running(scheduler_service(scheduler_tick=0.1)),
            running(updater),
            running(gateway),
        ):
            r = await api.http.post("/machines", json={"name": "upd-1", "macs": [MAC]})
            assert r.status_code == 201, r.text
            with open(tmp_path / "agent.log", "wb") as log:
                agent = lab.popen(
                    host,
                    [sys.executable, "-m", "dpm_agent", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    await check_deliveries(api, f"http://127.0.0.1:{port}", deb, root)
                    await check_large_file(api, auth, tmp_path)
                    await check_at_time(api, f"http://127.0.0.1:{port}", tmp_path, root)
                finally:
                    agent.terminate()
                    agent.wait(timeout=20)


async def check_at_time(api, updater_url: str, tmp_path: Path, root: Path) -> None:
    """when=at-time: the step ends once the agent fetched the file and queued the install; the install
    runs at its time and reports as its own delivery, into the machine's update history."""
    deb = build_deb(tmp_path, "later-dpm", "2.0")
    upload_id = await upload(api, updater_url, deb, "later-dpm.deb")
    later = {"id": "later-dpm", "type": "deb", "system_version": "2.0", "execution": {"files": ["later-dpm.deb"]}}
    body = {"definition": later, "upload_id": upload_id, "file_name": "later-dpm.deb"}
    assert (await api.http.post("/packages", json=body)).status_code == 201
    at = (datetime.now(UTC) + timedelta(seconds=8)).isoformat(timespec="seconds")
    spec = {"kind": "remote-update", "params": {"packages": "later-dpm", "when": "at-time", "at": at}}
    assert (await api.http.post("/scenarios", json={"name": "upd-later", "spec": spec})).status_code == 201
    (queued,) = await run_until_done(api.http, "upd-later", {"machines": ["upd-1"]}, 1, timeout=120)
    assert queued["state"] == "completed", queued
    assert not (root / "usr/share/later-dpm/README").exists()  # not before its time

    async def history() -> list[dict]:
        return (await api.http.get("/machines/upd-1/updates")).json()["updates"]

    got = await eventually(history, until=lambda h: any(u["package_id"] == "later-dpm" for u in h), timeout=60,
                           what="the queued install's report")  # fmt: skip
    assert next(u for u in got if u["package_id"] == "later-dpm")["ok"]
    assert (root / "usr/share/later-dpm/README").read_text() == "installed by dpm\n"


async def check_large_file(api, auth: dict[str, str], tmp_path: Path) -> None:
    """`dpm files put` of 50 MiB: past the command frame's 3 MiB, by way of the updater."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for i in range(50):
            f.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))  # 1 MiB of varied bytes
    target = tmp_path / "files" / "sub" / "big.bin"
    env = {**os.environ, "DPM_API_URL": api.url, "DPM_API_TOKEN": auth["Authorization"].split()[1],
           "DPM_SESSION_FILE": os.devnull + ".none"}  # fmt: skip
    argv = [sys.executable, "-m", "dpm_cli", "files", "put", str(big), "upd-1", str(target), "--mode", "600"]
    put = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=300)
    assert put.returncode == 0, put.stdout + put.stderr
    assert target.stat().st_size == 50 << 20 and target.read_bytes() == big.read_bytes()
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)
    outside = [sys.executable, "-m", "dpm_cli", "files", "put", str(big), "upd-1", str(tmp_path / "escape.bin")]
    refused = await asyncio.to_thread(subprocess.run, outside, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "DPM-E122" in refused.stdout + refused.stderr
    assert not (tmp_path / "escape.bin").exists()


async def check_deliveries(api, updater_url: str, deb: bytes, root: Path) -> None:
    async def inventory() -> dict:
        r = await api.http.get("/machines/upd-1/inventory")
        return r.json() if r.status_code == 200 else {}

    await eventually(inventory, until=lambda i: "packages" in i, timeout=30, what="the agent's inventory")
    upload_id = await upload(api, updater_url, deb, "hello-dpm.deb")
    hello = {"id": "hello-dpm", "type": "deb", "system_version": "1.2-3", "execution": {"files": ["hello-dpm.deb"]}}
    r = await api.http.post(
        "/packages", json={"definition": hello, "upload_id": upload_id, "file_name": "hello-dpm.deb"}
    )
    assert r.status_code == 201, r.text
    broken = {"id": "broken", "type": "script", "execution": {"command": "sh -c 'echo oops >&2; exit 3'"}}
    assert (await api.http.post("/packages", json={"definition": broken})).status_code == 201
    for name, packages in (("upd-hello", "hello-dpm"), ("upd-broken", "broken")):
        spec = {"kind": "remote-update", "timeout_seconds": 300, "params": {"packages": packages}}
        assert (await api.http.post("/scenarios", json={"name": name, "spec": spec})).status_code == 201

    (done,) = await run_until_done(api.http, "upd-hello", {"machines": ["upd-1"]}, 1, timeout=120)
    assert done["state"] == "completed", done
    assert (root / "usr/share/hello-dpm/README").read_text() == "installed by dpm\n"  # dpkg unpacked it there
    got = await eventually(inventory, until=lambda i: "hello-dpm=1.2-3" in i["packages"], what="the new inventory")
    assert "hello-dpm=1.2-3" in got["packages"]

    (failed,) = await run_until_done(api.http, "upd-broken", {"machines": ["upd-1"]}, 1, timeout=120)
    assert (failed["state"], failed["code"]) == ("failed", "DPM-E234"), failed
    assert "3" in failed["reason"] and "oops" in failed["reason"], failed  # its exit code and output

    assert (await api.http.post("/clear", json={"machines": ["upd-1"]})).status_code == 200  # the error clear
    (again,) = await run_until_done(api.http, "upd-hello", {"machines": ["upd-1"]}, 1, timeout=120)
    assert again["state"] == "completed", again  # already applied: nothing to install
