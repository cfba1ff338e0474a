"""A service as a real process: it waits (and says so) while PostgreSQL and NATS are down, becomes
ready when they come up, drains on SIGTERM, and refuses a taken port with a clear error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from dpm_runtime.dbroles import role_of
from dpm_runtime.localstack.nats import NatsServer
from dpm_runtime.localstack.postgres import PostgresCluster
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT)


async def readyz(port: int) -> tuple[int, dict]:
    try:
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            return r.status_code, r.json()
    except httpx.HTTPError as exc:
        return 0, {"error": repr(exc)}


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_waits_for_postgres_and_nats_then_ready_then_drains_on_sigterm(tmp_path) -> None:
    root = Path(tempfile.mkdtemp(prefix="dpm-test-late-"))
    root.chmod(0o755)
    cluster = PostgresCluster(root=root / "pg", port=free_port(), fast_unsafe=True)
    cluster.init()
    nats = NatsServer(root=root / "nats", port=free_port())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPM_")}
    env.update(
        DPM_DATABASE_URL=cluster.url(user=role_of("scheduler")),
        DPM_DATABASE_ADMIN_URL=cluster.url(),
        DPM_NATS_URL=nats.url,
        DPM_SCHEDULER_PORT=str(port),
    )
    log = tmp_path / "scheduler.log"
    proc = start("dpm_scheduler", env, log)
    try:
        status, body = await eventually(lambda: readyz(port), until=lambda r: r[0] == 503, what="503 while down")
        assert body["status"] == "waiting" and body["postgres"] != "ok"
        assert await eventually(lambda: readyz(port), until=lambda r: "waiting" in r[1].get("postgres", ""))

        cluster.start()
        status, body = await eventually(
            lambda: readyz(port), until=lambda r: r[1].get("postgres") == "ok", what="postgres ok"
        )
        assert status == 503 and body["nats"] != "ok"

        nats.start()
        status, body = await eventually(lambda: readyz(port), until=lambda r: r[0] == 200, timeout=30, what="ready")
        assert body == {"status": "ready", "service": "scheduler", "postgres": "ok", "nats": "ok"}

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        messages = [rec["message"] for rec in log_lines(log)]
        assert any(m.startswith("waiting for postgres") for m in messages)
        assert any(m.startswith("waiting for nats") for m in messages)
        assert messages[-1] == "scheduler stopped" and "scheduler stopping: draining" in messages
    finally:
        if proc.poll() is None:
            proc.kill()
        nats.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_taken_port_is_a_clear_error_naming_the_setting(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DPM_")}
        env["DPM_PXE_PORT"] = str(port)
        proc = start("dpm_pxe", env, tmp_path / "pxe.log")
        assert proc.wait(30) == 2
    (record,) = [r for r in log_lines(tmp_path / "pxe.log") if r["level"] == "ERROR"]
    assert record["code"] == "DPM-E001"
    assert f"port {port}" in record["message"] and "DPM_PXE_PORT" in record["message"]


def test_a_taken_tftp_port_stops_pxe_with_the_setting_to_change(service_env, tmp_path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        env = {
            **service_env,
            "DPM_PXE_PORT": str(free_port()),
            "DPM_PXE_TFTP_PORT": str(port),
            "DPM_PXE_TFTP_HOST": "127.0.0.1",
            "DPM_PXE_ROOT": str(tmp_path / "boot"),
            "DPM_PXE_DHCP_ENABLED": "false",
        }
        proc = start("dpm_pxe", env, tmp_path / "pxe.log")
        assert proc.wait(60) == 2
    (record,) = [r for r in log_lines(tmp_path / "pxe.log") if r["level"] == "ERROR"]
    assert record["code"] == "DPM-E001" and "DPM_PXE_TFTP_PORT" in record["message"] and str(port) in record["message"]
