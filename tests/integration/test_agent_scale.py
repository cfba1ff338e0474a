"""1,000 simulated agents (asyncio, one process) on one agent-gateway process, heartbeating every 5 s
for 60 s: every machine comes online exactly once and none goes offline. Prints the gateway's CPU and
memory (`pytest -s` shows them)."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from dpm_agent.client import Agent
from dpm_agent.config import AgentConfig
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_schemas.agent_protocol import Facts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENTS = 1000
INTERVAL = 5.0
STEADY = 60.0
ENROLMENT = "scale-enrolment-token"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def transitions(database) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        rows = await (
            await conn.execute(
                "SELECT type, count(*), count(DISTINCT stream_id) FROM events"
                " WHERE type IN ('MachineCameOnline', 'MachineWentOffline') GROUP BY type"
            )
        ).fetchall()
    return {f"{t}:{k}": n for t, total, distinct in rows for k, n in (("events", total), ("machines", distinct))}


async def test_a_thousand_agents_heartbeating_for_a_minute(service_env, database, tmp_path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    port = free_port()
    env = {
        **service_env,
        "DPM_AGENT_GATEWAY_PORT": str(port),
        "DPM_AGENT_GATEWAY_ENROLMENT_TOKEN": ENROLMENT,
        "DPM_AGENT_GATEWAY_HEARTBEAT_INTERVAL": str(INTERVAL),
        "DPM_AGENT_GATEWAY_HEARTBEAT_TIMEOUT": str(3 * INTERVAL),
        "DPM_LOG_LEVEL": "WARNING",
    }
    with open(tmp_path / "gateway.log", "wb") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "dpm_agent_gateway"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout=30, what="gateway ready")
        for i in range(AGENTS):
            config = AgentConfig(
                server=f"http://127.0.0.1:{port}",
                enrolment_token=ENROLMENT,
                state_dir=tmp_path / f"a{i}",
                inventory=False,
                max_backoff=2.0,
            )
            facts = Facts(
                macs=(f"52:54:0b:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",),
                smbios_uuid=uuid.UUID(int=0x5CA1E << 64 | i),
                hostname=f"sim-{i}",
                ips=("10.9.0.1",),
            )
            agent = Agent(config, gather=lambda _c, f=facts: f, current_addresses=lambda: ("10.9.0.1",))
            tasks.append(asyncio.create_task(agent.run(stop)))
            if i % 50 == 49:
                await asyncio.sleep(0.2)  # a fleet does not start in the same millisecond

        online = await eventually(
            lambda: transitions(database),
            until=lambda t: t.get("MachineCameOnline:machines") == AGENTS,
            timeout=120,
            interval=1.0,
            what="all agents online",
        )
        cpu0, wall0 = cpu_seconds(gateway.pid), time.monotonic()
        await asyncio.sleep(STEADY)
        cpu = (cpu_seconds(gateway.pid) - cpu0) / (time.monotonic() - wall0)
        rss = rss_mib(gateway.pid)
        after = await transitions(database)
        print(
            f"\n{AGENTS} agents, heartbeat {INTERVAL:g} s, {STEADY:g} s steady: gateway CPU {cpu * 100:.1f}% of one "
            f"core, RSS {rss:.0f} MiB; transitions {after}"
        )
        assert online["MachineCameOnline:events"] == AGENTS
        assert after == {"MachineCameOnline:events": AGENTS, "MachineCameOnline:machines": AGENTS}
        assert cpu < 0.8
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        gateway.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(gateway.wait, 30)
        except subprocess.TimeoutExpired:
            gateway.kill()
